"""DVC adapters for OpenLedger: ``openledger dvc install``, the record stage run by ``dvc repro``, the git
post-commit hook and ``dvc.lock`` reading.

This package is the home of the DVC capture layer; its adapters arrive with the DVC capture work and import
only the core (``openledger``) and DVC, never ``mlflow_plugin``.
"""
