"""The store and its cryptography: what a record is, how it is signed, kept, checkpointed and verified.

``canonical`` (deterministic JSON) → ``dsse`` (envelopes) → ``records`` (payloads, signing, opening) →
``ledger`` (the ``.openledger/`` directory) → ``merkle`` / ``checkpoint`` (commitments over the ledger) →
``verify`` (everything at once); ``keys`` holds signing keys, ``digests`` content digests of artifacts.
"""
