"""Collection of the packages' doctests (``--doctest-modules``): MLflow's plugin registries import
``mlflow_plugin.context`` and ``mlflow_plugin.dvc_dataset`` while MLflow itself is importing, so a doctest run
that imported those modules first would make the registration circular. Importing the registries first is what
happens in a real process (MLflow loads the plugin, not the other way round)."""

import mlflow.data
import mlflow.tracking.context.registry  # noqa: F401
