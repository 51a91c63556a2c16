"""MLflow adapters for OpenLedger: tracking and registry store wrappers selected by ``ledger+<scheme>`` URIs,
a run context provider and a DVC dataset source.

This package is the home of the MLflow capture layer; its adapters arrive with the MLflow capture work and
import only the core (``openledger``) and MLflow, never ``dvc_hooks``.
"""
