"""``.openledger/config.yaml``: trust roots, trust mode, durability, and room for policies, scoring and attribution.

The file is committed with the ledger, so everyone who clones the repository verifies with the same rules.

>>> config = LedgerConfig.from_yaml("version: 1\\ntrust: {mode: tofu}\\n")
>>> config.trust_mode
'tofu'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import yaml

from openledger.errors import ConfigError, UnsupportedVersionError

__all__ = ["CONFIG_VERSION", "TRUST_MODES", "LedgerConfig"]

CONFIG_VERSION = 1
AUTO_PACK = 10_000  # loose objects that make an append pack them all (`auto_pack` in config.yaml)
TRUST_MODES = ("tofu", "endorsed")

_KEYID_PATTERN = "^ed25519:[0-9a-f]{64}$"
# One review rule per target kind (see openledger/governance/policy.py for what each field means and the defaults).
_REVIEW_RULE = {
    "type": "object",
    "properties": {
        "approvals": {"type": "integer", "minimum": 0},
        "reviewers": {"type": "array", "items": {"type": "string",
                                                 "pattern": "^(ed25519:[0-9a-f]{64}|role:[A-Za-z0-9._-]+)$"}},
        "distinct_from": {"type": "array", "items": {"enum": ["trainer", "data"]}},
        "block_on": {"type": "array", "items": {"enum": ["reject", "request-changes"]}},
    },
    "additionalProperties": False,
}
_POLICIES = {
    "type": "object",
    "properties": {
        "roles": {"type": "object", "propertyNames": {"pattern": "^[A-Za-z0-9._-]+$"},
                  "additionalProperties": {"type": "array", "items": {"type": "string", "pattern": _KEYID_PATTERN}}},
        **dict.fromkeys(("model", "run", "dataset", "record"), _REVIEW_RULE),
    },
    "additionalProperties": False,
}
_SCHEMA = {
    "type": "object",
    "properties": {
        "version": {"type": "integer", "minimum": 1},
        "trust": {
            "type": "object",
            "properties": {
                "mode": {"enum": list(TRUST_MODES)},
                "roots": {"type": "array", "items": {"type": "string", "pattern": "^ed25519:[0-9a-f]{64}$"}},
            },
            "additionalProperties": False,
        },
        "durability": {"enum": ["process", "fsync"]},
        "auto_pack": {"type": "integer", "minimum": 0},
        "signing_helper": {"type": "boolean"},
        "policies": {"type": "object"},  # checked against _POLICIES when present (see _validate_policies)
        "scoring": {"type": "object"},
        "attribution": {
            "type": "object",
            "properties": {
                "baseline": {"type": "number"},
                "metric": {"type": "string", "minLength": 1},
                "direction": {"enum": ["maximize", "minimize"]},
                "confidence": {"type": "number", "minimum": 0.5, "exclusiveMaximum": 1},
                "truncation": {"type": "number", "minimum": 0},
                "seed_param": {"type": "string", "minLength": 1},
                "ray": {  # --executor ray (docs/cluster.md)
                    "type": "object",
                    "properties": {
                        "address": {"type": "string", "minLength": 1},
                        "repo": {"type": "string", "minLength": 1},
                        "cache": {"type": "string", "minLength": 1},
                        "workdir": {"type": "string", "minLength": 1},
                        "cpus": {"type": "number", "exclusiveMinimum": 0},
                        "retries": {"type": "integer", "minimum": 0},
                        "rejections": {"type": "integer", "minimum": 1},
                        "runtime_env": {"type": "object"},
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
        "ci": {
            "type": "object",
            "properties": {
                "models": {"type": "array", "items": {"type": "string", "pattern": "^[^@]+@[^@]+$"}},
                "default_branch": {"type": "string", "minLength": 1},
                "strict": {"type": "boolean"},
                "checkpoint": {"type": "boolean"},
                "witness": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        "checkpoints": {
            "type": "object",
            "properties": {
                # the C2SP origin line of exported checkpoints: no spaces, no '+' (checked again when used)
                "origin": {"type": "string", "pattern": "^[^\\s+\\x00-\\x1f\\x7f]{1,255}$"},
                "witnesses": {"type": "array", "items": {"type": "string", "pattern": _KEYID_PATTERN}},
            },
            "additionalProperties": False,
        },
        "anchors": {"type": "object"},  # checked by openledger.anchors.config when anchors are used
    },
    "required": ["version"],
    "additionalProperties": False,
}
_validate = fastjsonschema.compile(_SCHEMA)


@cache
def _validate_policies() -> Callable[..., Any]:
    """The policies' validator, compiled on first use: compiling it costs more than everything else a ledger
    does when the record stage opens it, and most configurations have no policies."""
    validate: Callable[..., Any] = fastjsonschema.compile(_POLICIES)
    return validate


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    """The validated contents of ``config.yaml``.

    ``trust_mode`` is ``tofu`` (any key with a self-signed identity is trusted, unless another key claims one
    of its emails) or ``endorsed`` (only trust roots and keys a trust root endorsed). ``durability``
    ``process`` survives a killed process; ``fsync`` also survives power loss, at a large cost per append.
    ``auto_pack``: once this many records are loose objects, the append that makes them so packs them all
    (0: only ``openledger pack`` does). ``signing_helper``: batches of 1,000 or more records are signed by a
    child process holding the key while they are built (false: in the appending process only).
    """

    version: int = CONFIG_VERSION
    trust_mode: str = "tofu"
    trust_roots: tuple[str, ...] = ()
    durability: str = "process"
    auto_pack: int = AUTO_PACK
    signing_helper: bool = True
    policies: dict[str, Any] = field(default_factory=dict)
    scoring: dict[str, Any] = field(default_factory=dict)
    ci: dict[str, Any] = field(default_factory=dict)
    checkpoints: dict[str, Any] = field(default_factory=dict)
    anchors: dict[str, Any] = field(default_factory=dict)
    attribution: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "config.yaml") -> LedgerConfig:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise ConfigError(f"{source}:{where}: {problem}", hint="fix the YAML syntax") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping with at least `version: 1`")
        version = data.get("version")
        if isinstance(version, int) and version > CONFIG_VERSION:
            raise UnsupportedVersionError(
                f"{source} is version {version}; this OpenLedger reads version {CONFIG_VERSION}",
                hint="upgrade openledger-mlops",
            )
        try:
            _validate(data)
            if data.get("policies"):
                _validate_policies()(data["policies"], name_prefix="data.policies")
        except fastjsonschema.JsonSchemaException as exc:
            text = getattr(exc, "message", str(exc))
            raise ConfigError(f"{source}: {text.replace('data', 'config', 1)}") from None
        trust = data.get("trust") or {}
        return cls(
            version=data["version"],
            trust_mode=trust.get("mode", "tofu"),
            trust_roots=tuple(trust.get("roots", ())),
            durability=data.get("durability", "process"),
            auto_pack=data.get("auto_pack", AUTO_PACK),
            signing_helper=data.get("signing_helper", True),
            policies=data.get("policies") or {},
            scoring=data.get("scoring") or {},
            ci=data.get("ci") or {},
            checkpoints=data.get("checkpoints") or {},
            anchors=data.get("anchors") or {},
            attribution=data.get("attribution") or {},
        )

    @classmethod
    def load(cls, path: Path) -> LedgerConfig:
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing", hint="run `openledger init`") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        return cls.from_yaml(text, source=str(path))

    def to_yaml(self) -> str:
        lines = [
            "# OpenLedger configuration: committed with the ledger, read by every `openledger verify`.",
            f"version: {self.version}",
            "trust:",
            "  # tofu: any key with a self-signed identity is trusted (first key to claim an email keeps it).",
            "  # endorsed: only the roots below and keys they endorsed (`openledger keys endorse KEYID`).",
            f"  mode: {self.trust_mode}",
        ]
        if self.trust_roots:
            lines.append("  roots:")
            lines.extend(f"    - {root}" for root in self.trust_roots)
        else:
            lines.append("  roots: []")
        lines += [
            "# process: an append survives a killed process; fsync: it also survives power loss (much slower).",
            f"durability: {self.durability}",
        ]
        if self.auto_pack != AUTO_PACK:
            lines += ["# loose objects that make the next append pack them all (0: only `openledger pack` does)",
                      f"auto_pack: {self.auto_pack}"]
        if not self.signing_helper:
            lines += ["# sign large batches in the appending process only, not in a helper process holding the key",
                      "signing_helper: false"]
        if self.policies:
            lines.append(yaml.safe_dump({"policies": self.policies}, sort_keys=True).rstrip())
        if self.scoring:
            lines.append(yaml.safe_dump({"scoring": self.scoring}, sort_keys=True).rstrip())
        for name in ("ci", "checkpoints", "anchors", "attribution"):
            value = getattr(self, name)
            if value:
                lines.append(yaml.safe_dump({name: value}, sort_keys=True).rstrip())
        return "\n".join(lines) + "\n"
