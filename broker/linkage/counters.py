"""The report's counters: what each record and person contributes, and the report they make.

Every write adds the difference between the new and the old contribution of everything
it touched, so the counters in Redis are always exact and the report costs one read
(docs/linkage.md, "The report"). Counter names:

* ``persons``, ``linked_persons``; ``pair:<dsn>:<dsn>`` per dataset pair of a person;
* ``n:<dsn>`` records held, ``linked:<dsn>`` of them in a person with another dataset;
* ``lk:<dsn>:<key>`` records that joined their person through a key; ``plk:<dsn>``
  records the probabilistic stage linked (reported as the key ``probabilistic``);
* ``cfl`` records with a conflict, ``cfl:<code>`` by kind; ``amb:<dsn>`` ambiguous tokens.

The contributions are cached and shared: callers never change what they are given.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from broker.linkage.rules import CONFLICT_KINDS, NO_KEY
from broker.store.linkage_store import DatasetEntry

__all__ = [
    "DatasetReport",
    "LinkageReport",
    "build_report",
    "joining_counters",
    "member_counters",
    "person_counters",
    "prob_counter",
    "record_counters",
    "tally",
]


@dataclass(frozen=True, slots=True)
class DatasetReport:
    """Linkage counts of one dataset.

    Attributes:
        id: dataset id.
        org: owning organisation.
        one_record_per_person: as declared.
        records: records held.
        linked_records: records in a person with a record of another dataset.
        ambiguous_tokens: tokens held by two or more of its records (when one per person).
    """

    id: str
    org: str
    one_record_per_person: bool
    records: int
    linked_records: int
    ambiguous_tokens: int


@dataclass(frozen=True, slots=True)
class LinkageReport:
    """The linkage as it stands.

    Attributes:
        records: records held, all datasets.
        persons: persons.
        linked_persons: persons with records of two or more datasets.
        links_by_key: records that joined their person through each match key.
        links_by_dataset_pair: persons holding records of both datasets of a pair
            (``"a|b"``, ids in sorted order).
        ambiguous_tokens: (token, dataset) pairs found ambiguous.
        conflicting_records: records with a recorded conflict between keys.
        conflicts_by_kind: the same, by kind (``key``, ``twin``, ``merge``).
        datasets: per dataset counts.
    """

    records: int
    persons: int
    linked_persons: int
    links_by_key: dict[str, int]
    links_by_dataset_pair: dict[str, int]
    ambiguous_tokens: int
    conflicting_records: int
    conflicts_by_kind: dict[str, int]
    datasets: list[DatasetReport] = field(default_factory=list)


def prob_counter(dsn: int) -> str:
    """The counter of a dataset's records linked by the probabilistic stage."""
    return f"plk:{dsn}"


def person_counters(members: Sequence[tuple[int, int]] | None) -> dict[str, int]:
    """Report counters one person of ``(rid, dsn)`` members contributes."""
    if not members:
        return {}
    return member_counters(tuple(d for _, d in members))


@functools.lru_cache(maxsize=4096)
def member_counters(member_dsns: tuple[int, ...]) -> dict[str, int]:
    """Report counters one person contributes, from its members' dataset numbers."""
    out = {"persons": 1}
    dsns = sorted(set(member_dsns))
    if len(dsns) > 1:
        out["linked_persons"] = 1
        for i, a in enumerate(dsns):
            for b in dsns[i + 1 :]:
                out[f"pair:{a}:{b}"] = 1
        for d in member_dsns:
            name = f"linked:{d}"
            out[name] = out.get(name, 0) + 1
    return out


@functools.lru_cache(maxsize=4096)
def record_counters(dsn: int, link_key: int, cflags: int) -> dict[str, int]:
    """Report counters one record contributes."""
    out = {f"n:{dsn}": 1}
    if link_key != NO_KEY:
        out[f"lk:{dsn}:{link_key}"] = 1
    if cflags:
        out["cfl"] = 1
        for c in range(len(CONFLICT_KINDS)):
            if cflags >> c & 1:
                out[f"cfl:{c}"] = 1
    return out


@functools.lru_cache(maxsize=4096)
def joining_counters(member_dsns: tuple[int, ...], dsn: int, link_key: int) -> dict[str, int]:
    """Counter changes when a new record of ``dsn`` joins a person of ``member_dsns``
    through ``link_key`` (no members: it starts a person)."""
    out = dict(record_counters(dsn, link_key, 0))
    tally(out, member_counters((*member_dsns, dsn)), 1)
    if member_dsns:
        tally(out, member_counters(member_dsns), -1)
    return {name: value for name, value in out.items() if value}


def tally(totals: dict[str, int], counters: dict[str, int], sign: int) -> None:
    """Add ``sign`` times ``counters`` to ``totals``."""
    for name, value in counters.items():
        totals[name] = totals.get(name, 0) + sign * value


def build_report(counters: dict[str, int], datasets: dict[int, DatasetEntry]) -> LinkageReport:
    """The linkage report from the stored counters and the registered datasets."""
    records = 0
    per_dataset: list[DatasetReport] = []
    for dsn, d in sorted(datasets.items(), key=lambda item: item[1].id):
        held = counters.get(f"n:{dsn}", 0)
        records += held
        per_dataset.append(
            DatasetReport(
                id=d.id,
                org=d.org,
                one_record_per_person=d.one_record_per_person,
                records=held,
                linked_records=counters.get(f"linked:{dsn}", 0),
                ambiguous_tokens=counters.get(f"amb:{dsn}", 0),
            )
        )
    by_key: dict[str, int] = {}
    by_pair: dict[str, int] = {}
    for name, value in counters.items():
        if not value:
            continue
        if name.startswith("plk:"):
            by_key["probabilistic"] = by_key.get("probabilistic", 0) + value
        elif name.startswith("lk:"):
            _, dsn_text, k_text = name.split(":")
            owner = datasets.get(int(dsn_text))
            k = int(k_text)
            names = owner.key_names if owner is not None else ()
            key = names[k] if k < len(names) else f"key{k}"
            by_key[key] = by_key.get(key, 0) + value
        elif name.startswith("pair:"):
            _, a_text, b_text = name.split(":")
            a, b = datasets.get(int(a_text)), datasets.get(int(b_text))
            if a is not None and b is not None:
                pair = "|".join(sorted((a.id, b.id)))
                by_pair[pair] = by_pair.get(pair, 0) + value
    return LinkageReport(
        records=records,
        persons=counters.get("persons", 0),
        linked_persons=counters.get("linked_persons", 0),
        links_by_key=by_key,
        links_by_dataset_pair=by_pair,
        ambiguous_tokens=sum(counters.get(f"amb:{dsn}", 0) for dsn in datasets),
        conflicting_records=counters.get("cfl", 0),
        conflicts_by_kind={
            kind: counters.get(f"cfl:{c}", 0) for c, kind in enumerate(CONFLICT_KINDS)
        },
        datasets=per_dataset,
    )
