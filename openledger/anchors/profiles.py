"""The ``anchors:`` section of config.yaml: trusted timestamp authorities and EVM chain profiles.

::

    anchors:
      clock_skew: 300                 # seconds a record's claimed time may exceed its anchor's (default 300)
      tsa:                            # timestamp authorities whose tokens verify
        - name: freetsa
          url: https://freetsa.org/tsr      # optional: `anchor --tsa freetsa` uses it
          certificate: |                    # PEM: the root(s) the TSA's certificate chains to
            -----BEGIN CERTIFICATE-----
            ...
      evm:                            # chain profiles: a chain is configuration, not code
        - name: openledger
          chain_id: 1612
          rpc_url: https://rpc.example.org  # optional: `anchor --evm openledger` and `verify --evm openledger`
          confirmations: 12                 # blocks on top before an anchor counts as final (default 1)

>>> profiles = AnchorProfiles.from_config({"evm": [{"name": "dev", "chain_id": 31337}]})
>>> profiles.chain("dev").chain_id
31337
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fastjsonschema

from openledger.errors import ConfigError

__all__ = ["AnchorProfiles", "ChainProfile", "TsaProfile"]

DEFAULT_CLOCK_SKEW = 300
_NAME = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
_URL = {"type": "string", "pattern": "^https?://[^\\s]+$", "maxLength": 2048}
_SCHEMA = {
    "type": "object",
    "properties": {
        "clock_skew": {"type": "integer", "minimum": 0, "maximum": 31_536_000},
        "tsa": {"type": "array", "items": {
            "type": "object",
            "properties": {"name": _NAME, "url": _URL,
                           "certificate": {"type": "string", "pattern": "-----BEGIN CERTIFICATE-----"}},
            "required": ["name", "certificate"], "additionalProperties": False}},
        "evm": {"type": "array", "items": {
            "type": "object",
            "properties": {"name": _NAME, "chain_id": {"type": "integer", "minimum": 1},
                           "rpc_url": _URL, "confirmations": {"type": "integer", "minimum": 1}},
            "required": ["name", "chain_id"], "additionalProperties": False}},
    },
    "additionalProperties": False,
}
_validate = fastjsonschema.compile(_SCHEMA)


@dataclass(frozen=True, slots=True)
class TsaProfile:
    name: str
    certificate: str  # PEM, one or more roots
    url: str | None = None


@dataclass(frozen=True, slots=True)
class ChainProfile:
    name: str
    chain_id: int
    rpc_url: str | None = None
    confirmations: int = 1


@dataclass(frozen=True, slots=True)
class AnchorProfiles:
    """The validated ``anchors:`` section (empty when there is none: no anchor is configured by default)."""

    tsa: tuple[TsaProfile, ...] = ()
    evm: tuple[ChainProfile, ...] = ()
    clock_skew: int = DEFAULT_CLOCK_SKEW

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> AnchorProfiles:
        try:
            _validate(dict(section))
        except fastjsonschema.JsonSchemaException as exc:
            text = getattr(exc, "message", str(exc))
            raise ConfigError(f"config.yaml: {text.replace('data', 'anchors', 1)}") from None
        names = [entry["name"] for key in ("tsa", "evm") for entry in section.get(key, ())]
        if len(names) != len(set(names)):
            raise ConfigError("config.yaml: anchors: profile names must be unique")
        return cls(
            tuple(TsaProfile(t["name"], t["certificate"], t.get("url")) for t in section.get("tsa", ())),
            tuple(ChainProfile(e["name"], e["chain_id"], e.get("rpc_url"), e.get("confirmations", 1))
                  for e in section.get("evm", ())),
            section.get("clock_skew", DEFAULT_CLOCK_SKEW),
        )

    def chain(self, name: str) -> ChainProfile:
        for profile in self.evm:
            if profile.name == name:
                return profile
        raise ConfigError(f"no EVM chain profile named {name!r} under anchors: evm: in config.yaml")

    def chain_by_id(self, chain_id: int) -> ChainProfile | None:
        return next((profile for profile in self.evm if profile.chain_id == chain_id), None)

    def tsa_named(self, name: str) -> TsaProfile | None:
        return next((profile for profile in self.tsa if profile.name == name), None)
