"""HTML for the reports: one self-contained file (no scripts, no network)."""

from __future__ import annotations

from typing import Any

from openledger.errors import BadInputError

__all__ = ["contributors_html", "model_html"]


def model_html(report: dict[str, Any]) -> str:
    raise BadInputError("HTML reports are not available in this build", hint="use --format md")


def contributors_html(report: dict[str, Any]) -> str:
    raise BadInputError("HTML reports are not available in this build", hint="use --format md")
