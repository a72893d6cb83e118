"""What the engine got wrong, read against the truth after linking: a diagnostic only.

``bench.probabilistic --misses`` calls these on the engine's store once a data set is
linked: :func:`misses_of` lists every true pair left in two persons and why,
:func:`wrong_links` every record put in a person with another true person's records and
how it was linked. They read the truth, so nothing here may decide anything.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from client_sdk.record import NormalisedRecord

__all__ = ["misses_of", "wrong_links"]

_Datasets = dict[str, list[NormalisedRecord]]
_Truth = dict[tuple[str, str], int]


def _record_numbers(
    store: Any, evidence_of: dict[tuple[str, str], tuple[bytes, bytes | None]]
) -> dict[tuple[str, str], int]:
    """Each record's number in the store, by ``(dataset, local id)``: one scan of each
    dataset's records (``store.record_number`` scans them once per record)."""
    key_of_ref = {(key[0], bytes(ref)): key for key, (ref, _) in evidence_of.items()}
    return {
        key_of_ref[(dataset, bytes(record.ref))]: record.rid
        for dataset in {key[0] for key in evidence_of}
        for records in store.iter_dataset_records(dataset)
        for record in records
        if (dataset, bytes(record.ref)) in key_of_ref
    }


def misses_of(
    store: Any,
    model: Any,
    datasets: _Datasets,
    truth: _Truth,
    person_of: dict[tuple[str, str], int],
    evidence_of: dict[tuple[str, str], tuple[bytes, bytes | None]],
) -> list[dict[str, Any]]:
    """Every true pair the engine left in two persons, with why: a diagnostic only.

    ``reason`` is the possible match's (``grey``, ``rival``, ``twin``) when the engine
    kept one; else ``linked_elsewhere`` when both records' persons hold records of more
    than one dataset (each was joined to someone else, so neither was a candidate:
    docs/linkage.md, no chaining), ``below_review`` when
    the two share a blocking key (scored by the fitted model on the best shared key) or
    ``no_block`` when they share none. Each
    names the two records (``dataset:local id``, then the normalised fields), the key, the
    agreement vector, the probability and the link threshold.
    """
    records = {(name, r.local_id): r for name, rs in datasets.items() for r in rs}
    rid_of = _record_numbers(store, evidence_of)
    possible: dict[frozenset[int], Any] = {}
    for entry in store.possible_matches(limit=10**9):
        pair = frozenset((entry.record, entry.other))
        if pair not in possible or entry.probability > possible[pair].probability:
            possible[pair] = entry
    by_person: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for key, pid in truth.items():
        by_person[pid].append(key)
    names = [b.name for b in model.layout.blocks] if model is not None else []
    datasets_of: dict[int, set[str]] = defaultdict(set)
    for (dataset, _), pid in person_of.items():
        datasets_of[pid].add(dataset)

    def threshold(key: str | None) -> float:
        """The link threshold of the blocking key a pair was judged under."""
        if model is None:
            return 1.0
        return model.thresholds.link_of(names.index(key)) if key in names else model.thresholds.link

    out: list[dict[str, Any]] = []
    for members in by_person.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if a[0] == b[0] or person_of.get(a) == person_of.get(b):
                    continue
                row: dict[str, Any] = {}
                for side, key in (("a", a), ("b", b)):
                    r = records[key]
                    fields = [r.nhs_number, r.given_name, r.middle_names, r.family_name]
                    fields += [r.date_of_birth, r.sex, r.postcode, r.address_line]
                    row[side] = " | ".join([":".join(key), *(f or "" for f in fields)])
                entry = possible.get(frozenset((rid_of[a], rid_of[b])))
                if entry is not None:
                    row.update(
                        reason=entry.reason,
                        probability=entry.probability,
                        key=entry.blocking_key,
                        agreement=dict(entry.agreement),
                    )
                    row["threshold"] = threshold(entry.blocking_key)
                    out.append(row)
                    continue
                best = _best_shared_key(model, evidence_of[a][1], evidence_of[b][1])
                elsewhere = all(len(datasets_of[person_of[k]]) > 1 for k in (a, b))
                row["reason"] = (
                    "linked_elsewhere" if elsewhere else "below_review" if best else "no_block"
                )
                row.update(best)
                row["threshold"] = threshold(best.get("key"))
                out.append(row)
    return out


def wrong_links(
    store: Any,
    datasets: _Datasets,
    truth: _Truth,
    evidence_of: dict[tuple[str, str], tuple[bytes, bytes | None]],
) -> list[dict[str, Any]]:
    """Every record the engine put in a person with a record of another true person, with
    how it was linked (``store.link_basis``): a diagnostic only, read after linking.

    A probabilistic link names its partner, and is wrong when the partner is another
    person; a record joined by a match key is wrong when no other record of its person is
    the same true person. Each names the record and its partner (``dataset:local id``,
    then the normalised fields) and the basis (kind, key, probability, agreement).
    """
    records = {(name, r.local_id): r for name, rs in datasets.items() for r in rs}
    key_of = {rid: key for key, rid in _record_numbers(store, evidence_of).items()}

    def fields(key: tuple[str, str]) -> str:
        r = records[key]
        values = [r.nhs_number, r.given_name, r.middle_names, r.family_name]
        values += [r.date_of_birth, r.sex, r.postcode, r.address_line]
        return " | ".join([":".join(key), *(v or "" for v in values)])

    out: list[dict[str, Any]] = []
    for pid, _members in store.iter_persons():
        rids = store.person_record_numbers(pid)
        if len({truth[key_of[rid]] for rid in rids}) < 2:
            continue
        for rid, basis in store.link_basis(rids).items():
            key = key_of[rid]
            if basis.kind == "probabilistic" and basis.partner is not None:
                partner = key_of[basis.partner]
                if truth[partner] == truth[key]:
                    continue
            elif any(truth[key_of[o]] == truth[key] for o in rids if o != rid):
                continue
            else:
                partner = next(key_of[o] for o in rids if o != rid)
            out.append(
                {
                    "record": fields(key),
                    "partner": fields(partner),
                    "kind": basis.kind,
                    "key": basis.match_key or basis.blocking_key,
                    "probability": basis.probability,
                    "agreement": dict(basis.agreement),
                }
            )
    return out


def _best_shared_key(model: Any, ev_a: bytes | None, ev_b: bytes | None) -> dict[str, Any]:
    """The best-scoring blocking key two records share, its probability and agreement
    vector under the fitted model; empty when they share none."""
    from broker.store.linkage_evidence import block_keys, raw_agreement
    from broker.store.linkage_explain import name_levels

    if ev_a is None or ev_b is None or model is None:
        return {}
    best: tuple[float, int, tuple[int, ...]] | None = None
    for j in sorted({k[0] for k in set(block_keys(ev_a)) & set(block_keys(ev_b))}):
        vector = raw_agreement(model.layout.blocks[j].columns, ev_a, ev_b)
        scored = (model.blocks[j].probability(vector), j, vector)
        best = scored if best is None or scored > best else best
    if best is None:
        return {}
    key_name, named = name_levels(model, best[1], best[2])
    return {"probability": best[0], "key": key_name, "agreement": dict(named)}
