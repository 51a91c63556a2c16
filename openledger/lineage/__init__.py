"""What went into what: join keys, the lineage graph over the ledger, TARGET resolution, reconciliation with
MLflow, DVC and git."""
