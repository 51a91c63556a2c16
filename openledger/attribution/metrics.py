"""Reading a pipeline's metrics files (DVC's ``metrics:``): JSON, YAML or TOML, nested keys joined with dots.

Pure parsing, shared by the DVC executor (which reads a run's metrics) and reconcile (which reads them again
from git to check an attribution's runs).

>>> parse_metrics("metrics.json", b'{"test": {"acc": 0.9, "n": 10}, "ok": true}')
{'test.acc': 0.9, 'test.n': 10.0}
>>> run_metrics({"eval/metrics.json": b'{"acc": 0.5}'})
{'acc': 0.5, 'eval/metrics.json:acc': 0.5}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomllib
import yaml

__all__ = ["parse_metrics", "run_metrics"]


def _flatten(prefix: str, value: Any, into: dict[str, float]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, into)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        into[prefix] = float(value)


def parse_metrics(path: str, data: bytes) -> dict[str, float]:
    """The numeric values of one metrics file; empty when it does not parse."""
    try:
        if path.endswith(".toml"):
            parsed: Any = tomllib.loads(data.decode("utf-8"))
        else:
            parsed = yaml.safe_load(data)  # JSON is YAML
    except (ValueError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    found: dict[str, float] = {}
    _flatten("", parsed, found)
    return found


def run_metrics(files: Mapping[str, bytes]) -> dict[str, float]:
    """Every metric of a run's metrics files, by name (the first file's value when two files share a name)
    and as ``path:name``."""
    metrics: dict[str, float] = {}
    for path in sorted(files):
        for name, value in parse_metrics(path, files[path]).items():
            metrics.setdefault(name, value)
            metrics[f"{path}:{name}"] = value
    return metrics
