"""The governance fields every new agreement records (the ICO data sharing code's list).

Tests that write agreements add these, as a dict or as TOML lines, so that each agreement
they create is one the broker accepts.
"""

from __future__ import annotations

import json
from datetime import date, timedelta


def governance(*, start: date, end: date) -> dict[str, object]:
    """The governance fields of an agreement running from ``start`` to ``end``."""
    return {
        "objective": "To plan community services for frail patients.",
        "article_6": "Art 6(1)(e) public task",
        "article_9": "Art 9(2)(j) archiving, research and statistics",
        "confidentiality_basis": "s251",
        "controllers": ["Somerset Integrated Care Board"],
        "processors": ["Tessera broker operator"],
        "dpia_reference": "DPIA-2026-014",
        "individual_rights": "Privacy notices at every practice; objections go to the DPO.",
        "quality_checks": "The SDK quality report is reviewed before each upload.",
        "retention_until": end + timedelta(days=365),
        "secure_deletion": "Recipients delete released files and confirm in writing.",
        "review_dates": [start + (end - start) // 2],
    }


def governance_toml(*, start: date, end: date) -> str:
    """The same fields as TOML lines, to go before the first ``[[datasets]]`` table."""
    lines = []
    for key, value in governance(start=start, end=end).items():
        if isinstance(value, date):
            text = value.isoformat()
        elif isinstance(value, list):
            text = "[" + ", ".join(_toml_value(v) for v in value) + "]"
        else:
            text = _toml_value(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return json.dumps(value)
