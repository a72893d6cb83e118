"""Incremental linkage: records join persons through their strongest unambiguous match key.

This package decides; :class:`~broker.store.linkage_store.LinkageStore` holds. Its
modules, by the job each does (docs/architecture.md):

* :mod:`.rules` — the rules of docs/linkage.md and the one ``decide`` both paths use;
* :mod:`.session` — a run of records decided with every side effect (dissolving,
  re-linking, merges, conflicts);
* :mod:`.clean_path` — a precondition check, then the rules, straight onto the mirror;
* :mod:`.probabilistic` — after the cascade, the probabilistic stage: the model, scored
  pairs and their rules, link bases and possible matches (docs/probabilistic.md);
* :mod:`.counters` — the report counters and the report;
* :mod:`.model` — what the engine is given and what a call tells;
* :mod:`.engine` — :class:`Linker`: the lock, the slices and the writer thread.

The rules (DESIGN.md, "Linkage (broker)"):

* match keys are ranked, index 0 strongest;
* a token held by two records of a one-record-per-person dataset is *ambiguous* for that
  dataset: it links nothing to or from that dataset's records;
* a record joins the person reached by its strongest usable key; if that key reaches
  several persons that may be merged, they merge into the oldest (smallest) person id;
* a person never holds two records of one one-record-per-person dataset (the *twin
  guard*): a candidate that would break it is not used, and is recorded;
* a weaker key that points at another person is a *conflict*: recorded, never followed;
* person ids are stable; a change (retraction, correction, a token turning ambiguous)
  dissolves only the persons it touches and re-links their remaining records.

One linking worker at a time: every call holds the store's linkage lock.
"""

from __future__ import annotations

from broker.linkage.counters import DatasetReport, LinkageReport
from broker.linkage.engine import Linker
from broker.linkage.model import DatasetInfo, IncomingRecord, LinkStats
from broker.linkage.rules import CONFLICT_KINDS
from broker.store.linkage_explain import LinkBasis, PossibleMatch
from broker.store.linkage_store import LinkedRecord, PersonId

__all__ = [
    "CONFLICT_KINDS",
    "DatasetInfo",
    "DatasetReport",
    "IncomingRecord",
    "LinkBasis",
    "LinkStats",
    "LinkageReport",
    "LinkedRecord",
    "Linker",
    "PersonId",
    "PossibleMatch",
]
