"""MLflow adapters for OpenLedger: tracking and registry store wrappers selected by ``ledger+<scheme>`` URIs,
a run context provider and a DVC dataset source.

``store`` (the ``ledger+<scheme>`` builders), ``capture`` (what run and model records hold), ``context`` (run
tags), ``dvc_dataset`` (``mlflow.data.from_dvc``) and ``backfill`` (``openledger capture mlflow``). It imports
the core (``openledger``), MLflow and, for the DVC dataset source only, the dvc library; never ``dvc_hooks``.
"""
