"""``tessera-sdk tokenise`` and ``tessera-sdk spec show|hash|lint``.

Output names files, counts and match keys, never a value, token, reference or key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import closing
from datetime import date, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import click

from client_sdk.config import org_passphrase
from client_sdk.errors import InputError
from client_sdk.local_index import LocalIndex
from client_sdk.mapping import Mapping, load_mapping
from client_sdk.normalise.placeholders import rests_on_day_of_birth
from client_sdk.opt_out import SourceOptOuts, load_permitted
from client_sdk.orgstore import OrgStore
from client_sdk.output import check_output, private_files, write_failure
from client_sdk.pipeline import dates_of_birth, iter_records, record_blocks
from client_sdk.quality import QualityCollector, QualityReport, assigned_birthdays
from client_sdk.record import NormalisedRecord
from client_sdk.speclint import (
    DEFAULT_MIN_DISTINCT,
    formation_failure,
    key_formation,
    lint_spec,
    static_problems,
)
from client_sdk.speclint_evidence import DEFAULT_MAX_BLOCK, DEFAULT_MAX_SHARED, lint_evidence
from client_sdk.tokenise import CHUNK_RECORDS, EVIDENCE_CHUNK_RECORDS, TokeniseParams
from client_sdk.tokenise_batch import RecordBlocks, chunk_records_for, write_batch
from keys.errors import SpecError
from keys.spec import LinkageSpec, default_spec, resolve_spec

__all__ = ["available_cpus", "spec_group", "tokenise_command"]

_SPEC_HELP = (
    "Linkage spec: a TOML file, or the name of a shipped spec (uk-health, the default; "
    "uk-health-probabilistic, with the probabilistic stage's evidence; febrl)."
)


def available_cpus() -> int:
    """CPUs this process may run on: the default number of tokenise workers.

    ``os.sched_getaffinity`` honours a container's or ``taskset``'s CPU set (Linux); where it
    does not exist (Windows, macOS) ``os.cpu_count`` counts the machine's.
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


_input_argument = click.argument(
    "input_path", metavar="INPUT", type=click.Path(path_type=Path, dir_okay=False)
)
_mapping_option = click.option(
    "--mapping", "mapping_path", required=True, type=click.Path(path_type=Path, dir_okay=False)
)
_spec_option = click.option(
    "--spec", "spec_path", type=click.Path(path_type=Path, dir_okay=False), help=_SPEC_HELP
)


_BIRTH_DAY_SAMPLE = 250_000
"""Rows whose dates of birth show which days the extract heaps them on: the whole of most
extracts; of a larger one its first rows, so that the pass costs at most about half a
second (a day heaped at a tenth of the births of a hostel shows in far fewer)."""


def _assigned_birthdays(spec: LinkageSpec, path: Path, mapping: Mapping) -> frozenset[str]:
    """The days this extract heaps its dates of birth on, when the spec has a key that
    is not formed on them or compares dates of birth (a pass over the dates before
    tokenising; docs/quality.md)."""
    if not any(
        rests_on_day_of_birth((f.field, f.transform) for f in key.leaves)
        for key in (*spec.match_keys, *spec.blocking_keys)
    ) and not any(c.field == "date_of_birth" for c in spec.comparisons):
        return frozenset()
    with closing(dates_of_birth(path, mapping)) as dates:  # closes the file at once
        return assigned_birthdays(islice(dates, _BIRTH_DAY_SAMPLE))


def _spec(path: Path | None) -> LinkageSpec:
    return default_spec() if path is None else resolve_spec(path)


@click.command("tokenise")
@_input_argument
@_mapping_option
@_spec_option
@click.option(
    "--dir",
    "orgdir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The organisation directory (keystore and local index).",
)
@click.option("--domain", required=True, help="Linkage domain, e.g. somerset-health.")
@click.option("--key-version", default=None, help="Domain key version (default: the newest).")
@click.option("--dataset", required=True, help="Dataset name, as registered with the broker.")
@click.option(
    "--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="Batch file."
)
@click.option(
    "--workers",
    default=available_cpus,
    show_default="the CPUs available to this process",
    type=click.IntRange(1, 256),
    help="Processes to tokenise in; 1 works in this process.",
)
@click.option(
    "--chunk-records",
    type=click.IntRange(1, 1_000_000),
    show_default=f"{CHUNK_RECORDS:,}; {EVIDENCE_CHUNK_RECORDS:,} with the probabilistic evidence",
    help="Records per chunk (an upload sends one chunk a request).",
)
@click.option(
    "--permitted",
    "permitted_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The NHS numbers that may be used, as Check for National Data Opt-outs returns "
    "them: records not in it are flagged research-restricted.",
)
@click.option(
    "--opt-out-checked",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The day of the national opt-out check (default: the permitted file's date column).",
)
@click.option("--progress/--no-progress", default=True, help="Progress bar on a terminal.")
@click.option("--force", is_flag=True, help="Replace an existing batch file.")
def tokenise_command(
    input_path: Path,
    mapping_path: Path,
    spec_path: Path | None,
    orgdir: Path,
    domain: str,
    key_version: str | None,
    dataset: str,
    out: Path,
    workers: int,
    chunk_records: int | None,
    progress: bool,
    *,
    force: bool,
    permitted_path: Path | None = None,
    opt_out_checked: datetime | date | None = None,
) -> None:
    """Tokenise INPUT into a token batch, keeping the reference index on this machine.

    The batch holds, per record, an opaque reference, one token per match key whose
    fields are all present, and the mapping's payload columns; its manifest carries the
    spec hash, domain, key version, dataset and the quality report. Nothing else leaves.
    The batch is written with mode 0600, never over an input, and over an earlier batch
    only with --force. A spec the linter refuses without data (tessera-sdk spec lint) is
    refused; keys that form for few records are named. The passphrase comes from
    TESSERA_SDK_PASSPHRASE or a prompt.

    Opt-outs at the source: with --permitted (the file Check for National Data Opt-outs
    returned) every record whose NHS number is not in it, and with the mapping's
    [opt_out] Type 1 column every record coded with a Type 1 opt-out, is flagged
    research-restricted; the batch carries the flag and the day of the check, never a
    reason or a list.
    """
    spec = _spec(spec_path)
    _refuse_static(spec)
    chunk_records = chunk_records or chunk_records_for(spec)
    mapping = load_mapping(mapping_path)
    checked = opt_out_checked.date() if isinstance(opt_out_checked, datetime) else opt_out_checked
    if checked is not None and permitted_path is None:
        raise InputError("--opt-out-checked is the day of the check of a --permitted file")
    permitted = load_permitted(permitted_path, checked=checked) if permitted_path else None
    opt_outs = SourceOptOuts.of(mapping, permitted)
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: no such directory for the batch file")
    check_output(
        out,
        inputs=[
            ("the extract", input_path),
            ("the mapping", mapping_path),
            ("the spec", spec_path),
            ("the permitted file", permitted_path),
        ],
        directories=[("a file of the organisation directory", orgdir)] if orgdir.is_dir() else [],
        force=force,
    )
    store = OrgStore.open(orgdir, org_passphrase())
    domain_key, version = store.domain_key(domain, key_version)
    params = TokeniseParams(
        spec=spec,
        domain_key=domain_key,
        domain=domain,
        key_version=version,
        reference_secret=store.reference_secret(),
        dataset=dataset,
        payload_columns=tuple(mapping.payload.columns),
        opt_out_flags=opt_outs is not None,
        assigned_birthdays=_assigned_birthdays(spec, input_path, mapping),
    )
    collector = QualityCollector()
    blocks = record_blocks(
        input_path,
        mapping,
        report=collector,
        progress=progress,
        size=chunk_records,
        opt_outs=opt_outs,
    )
    records = RecordBlocks(
        _some_records(blocks.blocks, input_path, collector), blocks.prepare, blocks.absorb
    )
    reports: list[QualityReport] = []  # built once, for the manifest and the summary

    def quality() -> dict[str, Any]:
        reports.append(collector.report())
        return reports[-1].model_dump(mode="json")

    try:
        with private_files(), LocalIndex.open(orgdir, dataset) as index:
            summary = write_batch(
                records,
                params,
                out=out,
                index=index,
                quality=quality,
                workers=workers,
                chunk_records=chunk_records,
                org=store.org,
                opt_out_checked=opt_outs.checked if opt_outs is not None else None,
            )
    except OSError as exc:
        raise write_failure(exc, out) from None
    manifest = summary.manifest
    click.echo(
        f"wrote {out}: {manifest.record_count} records, {len(manifest.chunk_digests)} chunks, "
        f"domain {domain} {version}, spec {spec.name} {spec.content_hash[:19]}, "
        f"{workers} worker{'s' if workers > 1 else ''}"
    )
    for name, count in summary.token_counts.items():
        click.echo(f"  {name:<32} {count:>10} tokens")
    click.echo(f"local index: {index.path} (stays on this machine)")
    if opt_outs is not None:
        day = f", opt-outs checked {opt_outs.checked}" if opt_outs.checked else ""
        click.echo(
            f"{summary.restricted:,} records flagged research-restricted{day} "
            "(the batch carries the flag only)"
        )
    report = reports[-1]
    formations = key_formation(
        spec, summary.token_counts, records=manifest.record_count, report=report
    )
    for formation in formations:
        if formation.rare:
            click.echo(f"warning: {formation.warning()}", err=True)
    failure = formation_failure(formations)
    if failure is not None:
        click.echo(f"warning: {failure}: few records can link", err=True)
    click.echo(
        f"{report.rows_rejected:,} rows rejected of {report.rows_read:,} read "
        f"(tessera-sdk check lists them); quality grade: {report.grade}"
    )


def _refuse_static(spec: LinkageSpec) -> None:
    """Refuse a spec the linter refuses without data: one line per problem on stderr."""
    problems = static_problems(spec)
    if not problems:
        return
    for problem in problems:
        click.echo(f"refused: {problem}", err=True)
    raise SpecError(
        spec.name,
        [f"the spec linter refuses {len(problems)} match key(s); see tessera-sdk spec lint"],
    )


def _some_records(blocks: Iterable[Any], path: Path, collector: QualityCollector) -> Iterator[Any]:
    """``blocks``, refusing an extract without a single record before a batch is written."""
    empty = True
    for block in blocks:
        empty = False
        yield block
    if empty:
        raise InputError(
            f"{path}: no records to tokenise ({collector.rows_rejected:,} rows rejected, "
            f"{collector.rows_skipped:,} entries that are not patient records skipped; "
            "tessera-sdk check says why): no batch written"
        )


@click.group("spec")
def spec_group() -> None:
    """Show, hash and lint linkage specs."""


@spec_group.command("show")
@_spec_option
def spec_show(spec_path: Path | None) -> None:
    """Print the spec as TOML with its content hash."""
    spec = _spec(spec_path)
    click.echo(f"# content hash: {spec.content_hash}")
    click.echo(spec.to_toml(), nl=False)


@spec_group.command("hash")
@_spec_option
def spec_hash(spec_path: Path | None) -> None:
    """Print the spec's content hash (what a dataset declares and the broker checks)."""
    click.echo(_spec(spec_path).content_hash)


@spec_group.command("lint")
@_input_argument
@_mapping_option
@_spec_option
@click.option(
    "--min-distinct",
    default=DEFAULT_MIN_DISTINCT,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Least fraction of distinct values a match key may have.",
)
@click.option(
    "--max-block",
    default=DEFAULT_MAX_BLOCK,
    show_default=True,
    type=click.IntRange(1),
    help="Most records a blocking key's largest block may hold.",
)
@click.option(
    "--max-shared",
    default=DEFAULT_MAX_SHARED,
    show_default=True,
    type=click.IntRange(1),
    help="Most records that may share one comparison token inside one block.",
)
def spec_lint(
    input_path: Path,
    mapping_path: Path,
    spec_path: Path | None,
    min_distinct: float,
    max_block: int,
    max_shared: int,
) -> None:
    """Refuse match keys too common to hide, judged on this organisation's own INPUT.

    Also names, one line each, the keys that form for fewer than 10% of the
    records (every field of a key must be present for it to form), and fails when the
    strongest key or most keys do. A spec with blocking keys and comparisons (the
    probabilistic stage's evidence) has each judged too: a blocking key whose largest
    block holds more than --max-block records is refused (the broker would compare too
    many pairs there), and so is a comparison one of whose tokens more than --max-shared
    records share inside a block (it would tell large groups apart there). Exits 7 when
    anything is refused or the spec cannot form. Nothing is written and no value is shown.
    """
    spec = _spec(spec_path)
    mapping = load_mapping(mapping_path)
    collector = QualityCollector()
    records = _Counted(iter_records(input_path, mapping, report=collector, progress=False))
    assigned = _assigned_birthdays(spec, input_path, mapping)
    verdicts = lint_spec(spec, records, min_distinct=min_distinct, assigned_birthdays=assigned)
    for v in verdicts:
        click.echo(
            f"{v.verdict:<9} {v.name:<32} {v.present:>9} records  "
            f"{v.distinct_fraction:7.2%} distinct  {v.reason}"
        )
    formations = key_formation(
        spec,
        {v.name: v.present for v in verdicts},
        records=records.count,
        report=collector.report(),
    )
    for formation in formations:
        if formation.rare:
            click.echo(f"warning   {formation.warning()}")
    problems = [
        f"match key {v.name!r} is too common to hide: {v.reason}"
        for v in verdicts
        if v.verdict == "refused"
    ]
    failure = formation_failure(formations)
    if failure is not None:
        problems.append(f"{failure}: the spec cannot link this extract")
    if spec.blocking_keys:  # more passes: the evidence is counted over every record
        evidence = lint_evidence(
            lambda: iter_records(input_path, mapping, report=QualityCollector(), progress=False),
            spec,
            max_block=max_block,
            max_shared=max_shared,
            assigned_birthdays=assigned,
        )
        for e in evidence:
            click.echo(
                f"{e.verdict:<9} {e.kind + ' ' + e.name:<32} {e.largest:>9} largest  {e.reason}"
            )
        problems += [
            f"{e.kind} {e.name!r} is refused: {e.reason}"
            for e in evidence
            if e.verdict == "refused"
        ]
    if problems:
        raise SpecError(spec.name, problems)


class _Counted:
    """An iterator of records that counts what was taken from it."""

    def __init__(self, records: Iterator[NormalisedRecord]) -> None:
        self._records = records
        self.count = 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> NormalisedRecord:
        record = next(self._records)
        self.count += 1
        return record
