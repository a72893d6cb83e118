"""``tessera-broker admin agreement create|list|show|revoke|dpia``: the operator's commands.

An agreement is written as TOML (see docs/agreements.md)::

    title = "Frailty and emergency admissions in Somerset"
    purpose = "To learn which patients ..."
    legal_basis = "Section 251 of the NHS Act 2006"
    kind = "research_record_level"
    researchers = ["a-researcher"]
    start = 2026-04-01
    end = 2027-03-31
    # ... and the governance fields the ICO data sharing code lists: objective,
    # article_6, article_9, confidentiality_basis, controllers, dpia_reference,
    # individual_rights, quality_checks, retention_until, secure_deletion, review_dates

    [[datasets]]
    org = "gp-a"
    name = "registrations"
    fields = ["AGE_BAND", "LTC_COUNT"]

``create`` prints the new agreement id on stdout; each contributing organisation then
approves it with ``tessera-sdk agreement approve ID`` under its own credential. ``dpia``
writes the agreement's DPIA pack (broker/dpia.py) for the information governance lead.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import click
import pydantic

from broker.agreements import (
    AGREEMENT_ID_PATTERN,
    agreement_datasets,
    create_agreement,
    get_agreement,
    list_agreements,
    revoke_agreement,
)
from broker.cli.operator import operator_runtime
from broker.dpia import DpiaFormat, deployment_facts, render_dpia
from broker.errors import BadRequestError, ValidationFailedError
from broker.labels import Labels
from broker.store.identities import list_identities
from keys.wire_release import LEGAL_BASES, REQUIRED_GOVERNANCE_FIELDS, AgreementTerms

__all__ = ["agreement_group", "load_terms"]

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Broker data directory (default TESSERA_BROKER_DATA_DIR or ./var/tessera).",
)


def _agreement_id(value: str) -> str:
    if not re.fullmatch(AGREEMENT_ID_PATTERN, value):
        raise click.BadParameter(f"{value!r}: an agreement id looks like dsa-0123456789")
    return value


def load_terms(path: Path) -> AgreementTerms:
    """Read and validate an agreement TOML file, every problem at once.

    Raises:
        ValidationFailedError: the file is not TOML or the terms do not validate.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValidationFailedError(f"{path}: cannot read agreement TOML ({exc})") from None
    try:
        return AgreementTerms.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ())) or "terms"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        raise ValidationFailedError(f"{path}: " + "; ".join(problems)) from None


@click.group(name="agreement")
def agreement_group() -> None:
    """Data-sharing agreements: create, list, show, revoke."""


_CREATE_HELP = (
    "Create an agreement in draft and print its id.\n\n"
    "Every organisation whose dataset it uses must then approve it with its own credential "
    "(`tessera-sdk agreement approve ID`). The governance fields of the ICO data sharing "
    "code are required: " + ", ".join(REQUIRED_GOVERNANCE_FIELDS) + " (docs/agreements.md). "
    "legal_basis is free text; the common UK "
    "gateways are: " + "; ".join(f'"{basis}"' for basis in LEGAL_BASES) + "."
)


@agreement_group.command(name="create", help=_CREATE_HELP)
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The agreement as TOML (docs/agreements.md).",
)
@_data_dir
def create_command(path: Path, data_dir: Path | None) -> None:
    """Create an agreement in draft and print its id (help: ``_CREATE_HELP``)."""
    terms = load_terms(path)
    with operator_runtime(data_dir) as runtime:
        agreement = create_agreement(runtime.store, terms, created_by="operator", role="operator")
    if terms.legal_basis not in LEGAL_BASES:
        click.echo(
            f"note: legal basis {terms.legal_basis!r} is not one of the common UK gateways",
            err=True,
        )
    click.echo(
        f"created agreement {agreement.id} (draft); approvals needed from: "
        + ", ".join(agreement.contributors),
        err=True,
    )
    click.echo(agreement.id)


@agreement_group.command(name="list")
@_data_dir
def list_command(data_dir: Path | None) -> None:
    """Every agreement: id, status, kind, title."""
    with operator_runtime(data_dir) as runtime:
        agreements = list_agreements(runtime.store)
    for agreement in agreements:
        terms = agreement.terms
        click.echo(
            f"{agreement.id}\t{agreement.status().value}\t{terms.kind.value}\t"
            f"{terms.start}..{terms.end}\t{terms.title}"
        )


@agreement_group.command(name="show")
@click.argument("agreement_id", callback=lambda _c, _p, v: _agreement_id(v))
@_data_dir
def show_command(agreement_id: str, data_dir: Path | None) -> None:
    """One agreement as JSON, with its status and approvals."""
    with operator_runtime(data_dir) as runtime:
        agreement = get_agreement(runtime.store, agreement_id)
    click.echo(json.dumps(agreement.to_wire().model_dump(mode="json"), indent=2))


@agreement_group.command(name="revoke")
@click.argument("agreement_id", callback=lambda _c, _p, v: _agreement_id(v))
@_data_dir
def revoke_command(agreement_id: str, data_dir: Path | None) -> None:
    """Revoke an agreement: nothing is released under it from the next request on."""
    with operator_runtime(data_dir) as runtime:
        agreement = revoke_agreement(runtime.store, agreement_id, by="operator", role="operator")
    click.echo(f"agreement {agreement.id} is {agreement.status().value}", err=True)


def _dpia_format(chosen: str | None, out: Path) -> DpiaFormat:
    if chosen is not None:
        return DpiaFormat(chosen)
    return DpiaFormat.HTML if out.suffix.lower() in (".html", ".htm") else DpiaFormat.MARKDOWN


@agreement_group.command(name="dpia")
@click.argument("agreement_id", callback=lambda _c, _p, v: _agreement_id(v))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the pack (.md, or .html for HTML).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in DpiaFormat]),
    default=None,
    help="markdown or html (default: from the file's extension, else markdown).",
)
@_data_dir
def dpia_command(agreement_id: str, out: Path, fmt: str | None, data_dir: Path | None) -> None:
    """Write the agreement's DPIA pack: data flows, who sees what, tokens, retention, risks.

    Built from the agreement, its datasets and this broker's settings (docs/dpia.md),
    for an information governance lead to take into their organisation's DPIA template.
    """
    with operator_runtime(data_dir) as runtime:
        agreement = get_agreement(runtime.store, agreement_id)
        try:
            datasets = agreement_datasets(runtime.store, agreement.terms)
        except BadRequestError:
            datasets = {}
        labels = Labels.of(list_identities(runtime.store))
        facts = deployment_facts(runtime.settings)
    text = render_dpia(
        agreement, datasets=datasets, facts=facts, fmt=_dpia_format(fmt, out), labels=labels
    )
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ValidationFailedError(f"{out}: cannot write the DPIA pack ({exc.strerror})") from None
    click.echo(f"wrote the DPIA pack of {agreement_id} to {out}", err=True)
