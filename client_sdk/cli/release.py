"""``tessera-sdk agreement``, ``cohort``, ``aggregate``, ``linked`` and ``risk``.

The credential comes from ``TESSERA_SDK_TOKEN`` and the broker URL from ``--broker`` or
``TESSERA_SDK_BROKER_URL``. Output files are written with mode 0600 and, as CSV, with
spreadsheet formulas neutralised (client_sdk/export.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from client_sdk.cli.broker import broker_option, cli_transport_options
from client_sdk.config import broker_target
from client_sdk.export import ExportFormat, write_table
from client_sdk.local_index import LocalIndex
from client_sdk.release_client import ReleaseClient
from client_sdk.risk import load_rules, read_linked, score_patients
from keys.derive import RecordRef
from keys.wire_release import (
    LINK_QUALITY_COLUMN,
    AggregateRequest,
    AgreementOut,
    CohortRequest,
    Predicate,
)

__all__ = [
    "aggregate_command",
    "agreement_group",
    "cohort_command",
    "linked_command",
    "parse_where",
    "risk_command",
]

_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "present", "absent")

agreement_option = click.option(
    "--agreement", "agreement_id", required=True, metavar="ID", help="The agreement id."
)
out_option = click.option(
    "--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="Output file."
)


def _client(broker_url: str | None) -> ReleaseClient:
    return ReleaseClient(*broker_target(broker_url), **cli_transport_options())


_ORDERING = ("lt", "le", "gt", "ge")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _orderable(value: str) -> bool:
    """A value ``lt``/``le``/``gt``/``ge`` can compare: a number or an ISO date.

    Anything else matches no released value, so a typo would give an empty release.
    """
    try:
        float(value)
    except ValueError:
        return bool(_ISO_DATE.fullmatch(value))
    return True


def parse_where(text: str) -> Predicate:
    """``"FIELD OP [VALUE]"`` as a predicate; ``in`` takes comma-separated values.

    Examples: ``"gp-a/registrations.LTC_COUNT ge 2"``, ``"trust/pas.AE in 3,4,5"``,
    ``"trust/pas.AE present"``. Refused before any release is asked for when it does not
    parse: ``lt``, ``le``, ``gt`` and ``ge`` take a number or a date (YYYY-MM-DD).
    """
    parts = text.split()
    at = next((i for i, p in enumerate(parts) if i > 0 and p in _OPS), None)
    if at is None:
        raise click.BadParameter(f"{text!r}: write FIELD OP [VALUE], OP one of {', '.join(_OPS)}")
    field, op, rest = " ".join(parts[:at]), parts[at], " ".join(parts[at + 1 :])
    value: str | list[str] | None
    if op in ("present", "absent"):
        value = None
    elif op == "in":
        value = [v.strip() for v in rest.split(",") if v.strip()]
        if not value:
            raise click.BadParameter(f"{text!r}: in takes comma-separated values")
    else:
        value = rest
        if op in _ORDERING and not _orderable(rest):
            raise click.BadParameter(
                f"{text!r}: {op} compares with a number or a date (YYYY-MM-DD), not {rest!r}"
            )
    try:
        return Predicate(field=field, op=op, value=value)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc}") from None


def _describe(agreement: AgreementOut) -> str:
    terms = agreement.terms
    lines = [
        f"{agreement.id}: {terms.title}",
        f"  status:      {agreement.status.value}",
        f"  kind:        {terms.kind.value}",
        f"  purpose:     {terms.purpose}",
        f"  legal basis: {terms.legal_basis}",
        f"  period:      {terms.start} to {terms.end}",
        f"  opt-outs:    {'apply' if terms.opt_outs_apply else 'do not apply'}",
    ]
    for release in terms.datasets:
        fields = ", ".join(release.fields) or "(no fields; presence only)"
        lines.append(f"  dataset:     {release.dataset_id}: {fields}")
    for name in terms.researchers:
        lines.append(f"  researcher:  {name}")
    for name in terms.organisations:
        lines.append(f"  receives:    {name}")
    for org in agreement.contributors:
        when = agreement.approvals.get(org)
        lines.append(f"  approval:    {org}: {when or 'awaited'}")
    return "\n".join(lines)


@click.group(name="agreement")
def agreement_group() -> None:
    """Data-sharing agreements you contribute to, receive under or are named on."""


@agreement_group.command(name="list")
@broker_option
def agreement_list(broker_url: str | None) -> None:
    """Your agreements: id, status, kind, title."""
    with _client(broker_url) as client:
        agreements = client.agreements()
    for agreement in agreements:
        kind = agreement.terms.kind.value
        click.echo(f"{agreement.id}\t{agreement.status.value}\t{kind}\t{agreement.terms.title}")


@agreement_group.command(name="show")
@click.argument("agreement_id", metavar="ID")
@broker_option
def agreement_show(agreement_id: str, broker_url: str | None) -> None:
    """One agreement in full: purpose, legal basis, datasets, fields, approvals."""
    with _client(broker_url) as client:
        click.echo(_describe(client.agreement(agreement_id)))


@agreement_group.command(name="approve")
@click.argument("agreement_id", metavar="ID")
@broker_option
def agreement_approve(agreement_id: str, broker_url: str | None) -> None:
    """Approve an agreement as a contributing organisation (read it first with `show`)."""
    with _client(broker_url) as client:
        agreement = client.approve(agreement_id)
    waiting = [o for o in agreement.contributors if o not in agreement.approvals]
    tail = f"; still awaiting {', '.join(waiting)}" if waiting else ""
    click.echo(f"approved {agreement.id}: now {agreement.status.value}{tail}", err=True)


@click.command(name="cohort")
@agreement_option
@out_option
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True
)
@click.option(
    "--require",
    multiple=True,
    metavar="ORG/DATASET",
    help="Only persons with a record in this dataset (repeat; default: every dataset).",
)
@click.option(
    "--where",
    multiple=True,
    metavar="'FIELD OP VALUE'",
    help="A condition on a released field, e.g. 'gp-a/reg.LTC_COUNT ge 2' (repeat: all hold).",
)
@click.option(
    "--select", multiple=True, metavar="FIELD", help="Fields to return (default: all released)."
)
@broker_option
def cohort_command(
    agreement_id: str,
    out: Path,
    fmt: ExportFormat,
    require: tuple[str, ...],
    where: tuple[str, ...],
    select: tuple[str, ...],
    broker_url: str | None,
) -> None:
    """Download a pseudonymised cohort: one row per person, keyed by project pseudonym."""
    request = CohortRequest(
        require=list(require) or None,
        where=[parse_where(w) for w in where],
        select=list(select) or None,
    )
    with _client(broker_url) as client:
        cohort = client.cohort(agreement_id, request)
    write_table(out, cohort.columns, cohort.rows, fmt=fmt)
    click.echo(f"wrote {len(cohort.rows)} persons to {out}", err=True)


@click.command(name="aggregate")
@agreement_option
@click.option(
    "--by", "by", multiple=True, required=True, metavar="FIELD", help="Count by (repeat)."
)
@out_option
@broker_option
def aggregate_command(
    agreement_id: str, by: tuple[str, ...], out: Path, broker_url: str | None
) -> None:
    """Download protected counts; margins show "(all)", suppressed counts are blank."""
    with _client(broker_url) as client:
        table = client.aggregate(agreement_id, AggregateRequest(by=list(by)))
    rows: list[list[str | int | None]] = []
    for cell in table.cells:
        values: list[str | int | None] = [
            "(all)" if v is None else (v or "(none)") for v in cell.values
        ]
        rows.append([*values, cell.count, "yes" if cell.suppressed else ""])
    write_table(out, [*table.by, "count", "suppressed"], rows)
    suppressed = sum(1 for c in table.cells if c.suppressed)
    if table.sdc_rule:
        named = f" ({table.sdc_profile.value})" if table.sdc_profile else ""
        note = f"{suppressed} suppressed; rule{named}: {table.sdc_rule}"
    elif table.rounding_base:  # a broker from before aggregates named their rule
        note = f"rounded to multiples of {table.rounding_base}"
    else:
        note = f"{suppressed} suppressed (minimum cell size {table.min_cell_size})"
    click.echo(f"wrote {len(rows)} counts to {out}; {note}", err=True)


@click.command(name="linked")
@agreement_option
@click.option(
    "--dir",
    "orgdir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="The organisation directory (its local index maps references to local ids).",
)
@out_option
@broker_option
def linked_command(agreement_id: str, orgdir: Path, out: Path, broker_url: str | None) -> None:
    """Download the direct-care return and join it to your own local ids.

    The broker sends, for each of your references, the attributes the agreement
    releases and the record's link quality (the match key that linked it, a probability
    band, or single); the local index (kept only here) turns references into local ids.
    The broker never learns a local id.
    """
    with _client(broker_url) as client:
        linked = client.linked(agreement_id)
    by_dataset: dict[str, list[int]] = {}
    for i, row in enumerate(linked.rows):
        by_dataset.setdefault(row.dataset, []).append(i)
    rows: list[list[str | int | None]] = []
    unknown = with_facts = 0
    for dataset, positions in sorted(by_dataset.items()):
        refs = [RecordRef(bytes.fromhex(linked.rows[i].ref)) for i in positions]
        with LocalIndex.open(orgdir, dataset) as index:
            local = index.lookup(refs)
        # Columns of another dataset hold linked facts; this dataset's own are the record's,
        # and link_quality says how the record is linked, which is no fact about the patient.
        linked_columns = [
            k
            for k, label in enumerate(linked.columns)
            if label != LINK_QUALITY_COLUMN and not _own_column(label, dataset)
        ]
        for i, ref in zip(positions, refs, strict=True):
            local_id = local.get(ref)
            if local_id is None:
                unknown += 1
                continue
            values = linked.rows[i].values
            with_facts += any(values[k] not in (None, "") for k in linked_columns)
            rows.append([local_id, dataset, *values])
    rows.sort(key=lambda r: (str(r[1]), str(r[0])))
    write_table(out, ["local_id", "dataset", *linked.columns], rows)
    click.echo(
        f"wrote {len(rows)} patients to {out}: {with_facts} with linked facts, "
        f"{len(rows) - with_facts} with none",
        err=True,
    )
    if unknown:
        click.echo(
            f"warning: {unknown} references are not in this directory's local index "
            "(tokenised elsewhere, or the index was replaced)",
            err=True,
        )


def _own_column(label: str, dataset: str) -> bool:
    """Whether column ``ORG/DATASET.FIELD`` is of the organisation's own ``dataset``."""
    return label.partition("/")[2].startswith(f"{dataset}.")


@click.command(name="risk")
@click.option(
    "--linked",
    "linked_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A file from `tessera-sdk linked`.",
)
@click.option(
    "--rules",
    "rules_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Rules TOML (example: client_sdk/data/risk_rules.toml; docs/risk.md).",
)
@out_option
@click.option("--top", type=click.IntRange(1), default=None, help="Only the N highest.")
def risk_command(linked_path: Path, rules_path: Path, out: Path, top: int | None) -> None:
    """Score your patients' risk of emergency admission; highest risk first."""
    rules = load_rules(rules_path)
    columns, rows = read_linked(linked_path)
    scored = score_patients(rules, columns, rows)
    if top is not None:
        scored = scored[:top]
    write_table(
        out,
        ["rank", "local_id", "dataset", "score", "level", "reasons"],
        [
            [rank, s.local_id, s.dataset, f"{s.score:g}", s.level, "; ".join(s.reasons)]
            for rank, s in enumerate(scored, start=1)
        ],
    )
    high = sum(1 for s in scored if s.level == "high")
    click.echo(f"wrote {len(scored)} patients at risk to {out} ({high} high)", err=True)
