"""A fitted :class:`~broker.matching.score.Model` as JSON, so a report can read it later.

The engine stores the model it links with (docs/keyspace.md); the linkage report, the
dashboard's m/u chart and the waterfall read it back. Floats are written by ``json``
with Python's shortest round-trip repr, so a model read back scores exactly as written.
"""

from __future__ import annotations

import json
from typing import Any

from broker.matching.evidence import BlockLayout, Layout
from broker.matching.model import BlockModel, ComparisonWeights
from broker.matching.score import Model, Thresholds

__all__ = ["layout_from_json", "layout_to_json", "model_from_json", "model_to_json"]


def _layout_doc(layout: Layout) -> list[dict[str, Any]]:
    return [
        {
            "name": b.name,
            "comparisons": list(b.comparisons),
            "levels": [list(x) for x in b.levels],
            "columns": [list(x) for x in b.columns],
        }
        for b in layout.blocks
    ]


def _layout(doc: list[dict[str, Any]]) -> Layout:
    return Layout(
        tuple(
            BlockLayout(
                str(b["name"]),
                tuple(str(c) for c in b["comparisons"]),
                tuple(tuple(str(v) for v in x) for x in b["levels"]),
                tuple(tuple(int(v) for v in x) for x in b["columns"]),
            )
            for b in doc
        )
    )


def layout_to_json(layout: Layout) -> bytes:
    """The layout alone, as JSON."""
    return json.dumps(_layout_doc(layout), separators=(",", ":")).encode()


def layout_from_json(data: bytes) -> Layout:
    """Inverse of :func:`layout_to_json`."""
    return _layout(json.loads(data))


def model_to_json(model: Model) -> bytes:
    """The model as JSON: layout, per blocking key prior and m/u per level, thresholds
    (the pooled link threshold, the review threshold, and per blocking key its own link
    threshold)."""
    doc = {
        "layout": _layout_doc(model.layout),
        "blocks": [
            {
                "block": b.block,
                "prior": b.prior,
                "pairs": b.pairs,
                "iterations": b.iterations,
                "converged": b.converged,
                "known_matches": b.known_matches,
                "comparisons": [
                    {"name": c.name, "levels": list(c.levels), "m": list(c.m), "u": list(c.u)}
                    for c in b.comparisons
                ],
            }
            for b in model.blocks
        ],
        "max_block": model.max_block,
        "thresholds": {
            "link": model.thresholds.link,
            "review": model.thresholds.review,
            "keys": list(model.thresholds.keys),
        },
        "records": model.records,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def model_from_json(data: bytes) -> Model:
    """Inverse of :func:`model_to_json`."""
    doc = json.loads(data)
    blocks = tuple(
        BlockModel(
            str(b["block"]),
            float(b["prior"]),
            tuple(
                ComparisonWeights(
                    str(c["name"]),
                    tuple(str(v) for v in c["levels"]),
                    tuple(float(v) for v in c["m"]),
                    tuple(float(v) for v in c["u"]),
                )
                for c in b["comparisons"]
            ),
            int(b["pairs"]),
            int(b["iterations"]),
            bool(b["converged"]),
            int(b.get("known_matches", 0)),
        )
        for b in doc["blocks"]
    )
    stored = doc["thresholds"]
    thresholds = Thresholds(
        float(stored["link"]),
        float(stored["review"]),
        # a model stored before thresholds per key has none: every key takes "link"
        tuple(float(t) for t in stored.get("keys", ())),
    )
    return Model(
        _layout(doc["layout"]), blocks, int(doc["max_block"]), thresholds, int(doc["records"])
    )
