"""The probabilistic stage: Fellegi–Sunter scoring of candidate pairs over keyed evidence.

Pure (no Redis, no I/O), typed and compile-friendly. The engine (broker/linkage) calls
it after the exact cascade; it never decides a link itself. docs/probabilistic.md is the
design and the threat model.

Interface for the engine
------------------------

1. **Evidence.** At ingest each record's block tokens and comparison tokens arrive in
   the chunk (``keys.chunk.ChunkEvidence``). Build the :class:`Layout` once per spec with
   ``Layout.from_columns(evidence.block_names, evidence.columns)`` and hold, per record,
   a :class:`RecordEvidence` (``record`` = the engine's record number, ``dataset``,
   ``blocks`` = block tokens, ``cells`` = ``evidence.cells()[i]``), re-keyed at rest like
   every token. Index records by (blocking key, block token).
2. **Fit.** ``fit(layout, held_records)`` estimates each blocking key's m, u and prior
   by EM from the held data alone (no ground truth). Refit when the holding has grown
   (e.g. by a tenth) or on demand; the weights are a function of the held evidence only,
   so two workers with the same holding fit the same model. A refit may change scores
   but the engine must never silently undo a released link because of it: re-scored
   links below the threshold become review items, recorded.
3. **Score.** For a slice of new records: fetch the *neighbourhood* — every held record
   sharing a block token with one of them, at most ``model.max_block`` per block — and
   call ``score_pairs(model, new, neighbourhood)``. It returns every candidate pair that
   involves a new record (records of two different datasets), best first, as
   :class:`ScoredPair` (the two record numbers, the blocking key, the agreement vector,
   the match weight and probability, term-frequency adjustments from the block's own
   token counts included). Identical evidence gives identical scores and
   order, whatever the order of the inputs.
4. **Decide (the engine's rules).** The cascade runs first: a record that joined through
   an exact key is linked as now. For the rest, the engine walks the scored pairs best
   first and, for a pair whose probability is at least ``Thresholds.link``, applies its
   rules of docs/linkage.md: the twin guard (a person never holds two records of a
   one-record-per-person dataset — :func:`one_to_one` is that rule for a flat list of
   pairs), no chaining (a record joins at most one person through this stage; a second
   high pair to another person is a conflict, recorded), stable person ids and merges
   that keep the older id. A pair at or above ``Thresholds.review`` and below the link
   threshold is a *possible match*, kept for review and never linked. Each probabilistic
   link keeps its explanation: the blocking key, the agreement vector and match weight
   (and :class:`BlockModel` per-level weights for the report's waterfall).
"""

from __future__ import annotations

from broker.matching.evidence import MISSING, BlockLayout, Layout, RecordEvidence, agreement
from broker.matching.model import BlockModel, ComparisonWeights, estimate
from broker.matching.persist import (
    layout_from_json,
    layout_to_json,
    model_from_json,
    model_to_json,
)
from broker.matching.score import (
    DEFAULT_MAX_BLOCK,
    Model,
    ScoredPair,
    Thresholds,
    candidate_pairs,
    fit,
    fit_scored,
    model_threshold,
    one_to_one,
    prefer_key,
    score_pairs,
    tf_adjustment,
    weight_probability,
)

__all__ = [
    "DEFAULT_MAX_BLOCK",
    "MISSING",
    "BlockLayout",
    "BlockModel",
    "ComparisonWeights",
    "Layout",
    "Model",
    "RecordEvidence",
    "ScoredPair",
    "Thresholds",
    "agreement",
    "candidate_pairs",
    "estimate",
    "fit",
    "fit_scored",
    "layout_from_json",
    "layout_to_json",
    "model_from_json",
    "model_threshold",
    "model_to_json",
    "one_to_one",
    "prefer_key",
    "score_pairs",
    "tf_adjustment",
    "weight_probability",
]
