"""Recording on behalf of the adapters (the MLflow plugin, the DVC hooks): fail open unless strict."""
