"""Who is who: identities, endorsements and revocations, evaluated under the ledger's trust mode."""
