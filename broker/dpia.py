"""A DPIA pack: what an information governance lead needs from Tessera for one agreement.

``tessera-broker admin agreement dpia ID --out FILE`` writes it. It is built from the
agreement's terms, the declarations of its datasets and the deployment's settings, so it
says what is true of this broker today: the data flows, who sees what, what each token
reveals (docs/token-format.md, "What tokens leak"), retention and deletion, the security
measures in force and the residual risks (docs/agreements.md, "Threats and limits"). It
fills no particular template: each section maps onto the usual headings of an
organisation's DPIA form (docs/dpia.md).

Markdown or HTML; the HTML escapes every value, since the terms are written by people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import jinja2

from broker.agreements import Agreement
from broker.config import BrokerSettings
from broker.labels import CONFIDENTIALITY_TEXT, Labels
from broker.register import ACCESS_TEXT, KIND_TEXT, aggregate_rule, opt_outs_text
from keys.wire import DatasetInfoOut
from keys.wire_release import AgreementKind, AgreementTerms

__all__ = [
    "DeploymentFacts",
    "DpiaFormat",
    "DpiaSection",
    "build_dpia",
    "deployment_facts",
    "render_dpia",
]

_NOT_RECORDED = "Not recorded in the agreement"


class DpiaFormat(StrEnum):
    """How the pack is written."""

    MARKDOWN = "markdown"
    HTML = "html"


@dataclass(frozen=True, slots=True)
class DeploymentFacts:
    """The security measures of this broker, as its settings make them.

    Attributes:
        tls: how connections to the broker are protected, in one sentence.
        durable_writes: every acknowledged write is on disk before it is acknowledged.
        limits: the request and sign-in limits in force, one sentence each.
        uncommitted_batch_days: days an unfinished upload is kept for resumption.
        audit_checkpoint_every: audit entries between signed checkpoints.
    """

    tls: str
    durable_writes: bool
    limits: tuple[str, ...]
    uncommitted_batch_days: float
    audit_checkpoint_every: int


@dataclass(frozen=True, slots=True)
class DpiaSection:
    """One section of the pack: paragraphs, then bullets, then an optional table."""

    heading: str
    paragraphs: tuple[str, ...] = ()
    bullets: tuple[str, ...] = ()
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = field(default=())


def deployment_facts(settings: BrokerSettings) -> DeploymentFacts:
    """The measures in force under ``settings``."""
    # TLS settings arrive with the HTTPS work (TESSERA_BROKER_TLS_CERT and _KEY, and a
    # client CA for mutual TLS); a broker without them relies on a proxy in front.
    cert = getattr(settings, "tls_cert", None)
    client_ca = getattr(settings, "tls_client_ca", None)
    if cert is not None and client_ca is not None:
        tls = "The broker serves HTTPS itself and requires a client certificate (mutual TLS)."
    elif cert is not None:
        tls = "The broker serves HTTPS itself (TLS certificate configured)."
    else:
        tls = (
            "The broker itself serves plain HTTP on "
            f"{settings.host}:{settings.port}: TLS must be terminated by a proxy in front "
            "of it; confirm this for the deployment."
        )
    limits = (
        f"Uploads: chunks of at most {settings.max_chunk_bytes:,} bytes and "
        f"{settings.max_chunk_records:,} records; other request bodies at most "
        f"{settings.max_json_bytes:,} bytes.",
        f"Credentials: after {settings.max_auth_failures_per_address} failed attempts from "
        f"one address, or {settings.max_auth_failures_per_credential} with one credential, "
        f"within {settings.auth_failure_window_seconds} seconds, further attempts are refused.",
        f"Dashboard: sessions end after {settings.session_ttl_seconds // 60} idle minutes; "
        f"{settings.sign_in_max_failures} failed sign-ins lock an address out for "
        f"{settings.sign_in_lockout_seconds} seconds.",
        f"Each organisation: at most {settings.max_open_batches_per_org} open uploads and "
        f"{settings.max_datasets_per_org} datasets.",
    )
    return DeploymentFacts(
        tls=tls,
        durable_writes=settings.durable_writes,
        limits=limits,
        uncommitted_batch_days=settings.receiving_ttl_seconds / 86400,
        audit_checkpoint_every=settings.audit_checkpoint_every,
    )


def _or_missing(value: object) -> str:
    return str(value) if value else _NOT_RECORDED


def _recipients(agreement: Agreement, labels: Labels) -> list[str]:
    terms = agreement.terms
    if terms.kind is AgreementKind.DIRECT_CARE:
        return [labels.org(name) for name in terms.organisations]
    return list(terms.researchers)


def _flows(agreement: Agreement) -> tuple[str, ...]:
    terms = agreement.terms
    release = {
        AgreementKind.RESEARCH_RECORD_LEVEL: (
            "Under this agreement, while it is active, the named researchers receive a "
            "pseudonymised cohort: one row per person, keyed by a project pseudonym that is "
            "different in every agreement, with only the fields under Data items."
        ),
        AgreementKind.RESEARCH_AGGREGATE: (
            "Under this agreement, while it is active, the named researchers receive only "
            "counts over at most four released fields, protected by the rule under Small "
            "numbers, with secondary suppression so that no withheld count can be worked out "
            "from the margins and totals."
        ),
        AgreementKind.DIRECT_CARE: (
            "Under this agreement, while it is active, each named organisation receives, for "
            "its own patients only, the fields under Data items from the linked records of "
            "the other organisations, keyed by its own references, which only its local index "
            "turns back into its local ids."
        ),
    }[terms.kind]
    return (
        "1. Each contributing organisation runs the Tessera SDK over its own extract, on "
        "its own systems. Names, NHS numbers, dates of birth and postcodes are normalised "
        "and turned into keyed HMAC tokens with the linkage domain's key, which the broker "
        "never holds; the raw identifiers never leave the organisation.",
        "2. The SDK uploads a batch to the broker: tokens, the organisation's own record "
        "references (keyed hashes under its own secret), the payload fields its mapping "
        "names, and counts. No name, NHS number, date of birth, postcode or local id is in "
        "it.",
        "3. The broker re-keys every token at rest with a secret of its own and links the "
        "records into persons. Tokens never leave the broker again.",
        "4. " + release,
        "5. Every upload, approval and release is written to a tamper-evident audit log; "
        "the public register shows this agreement and how many releases were made under it.",
    )


def _token_rows(datasets: dict[str, DatasetInfoOut]) -> tuple[tuple[str, ...], ...]:
    keys: dict[str, list[str]] = {}
    for dataset_id, info in datasets.items():
        for key in info.match_keys:
            keys.setdefault(key, []).append(dataset_id)
    labels = Labels()
    return tuple(
        (
            name,
            labels.key(name),
            "Whether two records share these values, and how common the shared value is; "
            "never the values themselves.",
            ", ".join(used),
        )
        for name, used in sorted(keys.items())
    )


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _source_opt_outs(terms: AgreementTerms) -> tuple[str, ...]:
    """How opt-outs applied at the source work, for research agreements that apply them."""
    if not terms.opt_outs_apply or terms.kind is AgreementKind.DIRECT_CARE:
        return ()
    return (
        "How opt-outs applied at the source work: each organisation checks the National Data "
        "Opt-out (the Check for National Data Opt-outs service) and its Type 1 codes on its "
        "own system and sends one research-restricted flag per record with the day of the "
        "check; the broker keeps the flag with the record, keeps no list of who opted out, "
        "counts only what it withheld (audit log), and refuses research releases from a "
        f"batch checked more than {terms.opt_out_max_age_days} days before.",
    )


def build_dpia(
    agreement: Agreement,
    *,
    datasets: dict[str, DatasetInfoOut],
    facts: DeploymentFacts,
    labels: Labels | None = None,
    now: datetime | None = None,
) -> tuple[str, list[DpiaSection]]:
    """The pack's title and sections.

    Args:
        agreement: the agreement the pack is for.
        datasets: declarations of its datasets, by dataset id (a missing one is noted).
        facts: the deployment's security measures (:func:`deployment_facts`).
        labels: organisation display names (default: the names themselves).
        now: the time of writing.
    """
    labels = labels or Labels()
    terms = agreement.terms
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    basis = terms.confidentiality_basis.value if terms.confidentiality_basis else ""
    sdc_profile, sdc_rule = aggregate_rule(terms)
    recipients = _recipients(agreement, labels)
    title = f"DPIA pack: {terms.title}"
    sections = [
        DpiaSection(
            "About this pack",
            (
                f"Agreement {agreement.id}, status {agreement.status(moment).value}, written "
                f"{moment:%Y-%m-%d %H:%M} UTC from the agreement as the broker holds it and "
                "from the broker's settings. Take each section into the matching heading of "
                "your organisation's DPIA template.",
                f"DPIA reference: {_or_missing(terms.dpia_reference)}.",
            ),
        ),
        DpiaSection(
            "The processing and its purpose",
            (f"Purpose: {terms.purpose}", f"Objective: {_or_missing(terms.objective)}"),
            (
                f"Kind of sharing: {KIND_TEXT[terms.kind]}.",
                f"Access method: {ACCESS_TEXT[terms.kind]}.",
                f"Dates: {terms.start} to {terms.end} (whole UTC days).",
                "Sublicensing: "
                + (
                    "allowed."
                    if terms.sublicensing
                    else "not allowed: recipients may not pass the data on."
                ),
            ),  # fmt: skip
        ),
        DpiaSection(
            "Lawful basis",
            (),
            (
                f"Legal basis: {terms.legal_basis}",
                f"UK GDPR Article 6: {_or_missing(terms.article_6)}",
                f"UK GDPR Article 9 condition: {_or_missing(terms.article_9)}",
                "Common-law duty of confidentiality: "
                + (CONFIDENTIALITY_TEXT.get(basis, basis) if basis else _NOT_RECORDED),
                "Opt-outs (National Data Opt-out, Type 1, opt-out registers): "
                + _lower_first(opt_outs_text(terms, applied=bool(terms.opt_outs_apply))),
                *_source_opt_outs(terms),
            ),
        ),
        DpiaSection(
            "Roles",
            (),
            (
                "Controllers: " + (", ".join(terms.controllers) or _NOT_RECORDED),
                "Processors: " + (", ".join(terms.processors) or _NOT_RECORDED),
                "Organisations providing data (each approved the agreement with its own "
                "credential): " + ", ".join(labels.org(o) for o in agreement.contributors),
                "Recipients: " + ", ".join(recipients),
            ),
        ),
        DpiaSection(
            "Data items",
            ("Only the fields listed here leave the broker under this agreement.",),
            (),
            ("Dataset", "Provided by", "Description", "Fields released"),
            tuple(
                (
                    d.dataset_id,
                    labels.org(d.org),
                    datasets[d.dataset_id].description
                    if d.dataset_id in datasets
                    else "No longer declared on the broker",
                    "; ".join(f"{f} ({labels.field(f)})" for f in d.fields)
                    or "None: used for linking only",
                )
                for d in terms.datasets
            ),
        ),
        DpiaSection("Data flows", _flows(agreement)),
        DpiaSection(
            "Who sees what",
            (),
            (),
            ("Party", "Sees", "Never sees"),
            (
                (
                    "Each contributing organisation",
                    "Its own extract; for direct care, what is released back about its own "
                    "patients",
                    "Another organisation's records, tokens or references",
                ),
                (
                    "The broker's operator",
                    "Tokens (re-keyed at rest), record references, payload fields, linkage "
                    "statistics, the audit log",
                    "Names, NHS numbers, dates of birth, postcodes, local ids; the domain key",
                ),
                (
                    "Recipients: " + ", ".join(recipients),
                    "The released fields of this agreement only, while it is active"
                    + (
                        ", keyed by project pseudonyms"
                        if terms.kind is AgreementKind.RESEARCH_RECORD_LEVEL
                        else ""
                    ),
                    "Tokens, other organisations' references, identifiers",
                ),
                (
                    "The public",
                    "The public register: this agreement's terms and release counts",
                    "Any record, identifier, token or reference",
                ),
            ),  # fmt: skip
        ),
        DpiaSection(
            "What each token reveals",
            (
                "Tokens are deterministic keyed hashes: whoever holds them learns which "
                "records share a value and how often, never the value itself. The limits: "
                "128-bit truncation under a secret domain key the broker never holds, "
                "separation per key, domain, version and spec, refusal of keys whose values "
                "are too common, re-keying at rest, and no token ever leaving the broker "
                '(docs/token-format.md, "What tokens leak, and how that is limited").',
            ),
            (),
            ("Match key", "Made of", "Reveals to the broker", "Used by"),
            _token_rows(datasets),
        ),
        DpiaSection(
            "Small numbers",
            (
                (
                    f"Rule: {sdc_rule} ({sdc_profile})."
                    if sdc_rule
                    else "No counts are released under this agreement."
                ),
            ),
        ),  # fmt: skip
        DpiaSection(
            "Retention and deletion",
            (),
            (
                f"Recipients keep released data until: {_or_missing(terms.retention_until)}",
                f"Secure deletion: {_or_missing(terms.secure_deletion)}",
                f"Releases stop at the end of the agreement ({terms.end}) or on revocation, "
                "from the next request.",
                "Linked records stay on the broker until their organisation withdraws or "
                "replaces them; withdrawal takes effect in every later release.",
                "An unfinished upload is kept for "
                f"{facts.uncommitted_batch_days:g} days for resumption, then discarded.",
                "The audit log is append-only and kept for the life of the broker.",
            ),
        ),
        DpiaSection(
            "Individuals' rights and data quality",
            (),
            (
                f"How rights are met: {_or_missing(terms.individual_rights)}",
                f"Quality checks: {_or_missing(terms.quality_checks)}",
            ),
        ),
        DpiaSection(
            "Security measures in force",
            (),
            (
                facts.tls,
                "Tokens are re-keyed at rest with a broker secret: a copy of the store plus "
                "one organisation's domain key still links nothing.",
                "Every use is audited; entries are hash-chained and a signed checkpoint is "
                f"written at least every {facts.audit_checkpoint_every:,} entries, so "
                "tampering is detectable.",
                "Writes are on disk before they are acknowledged."
                if facts.durable_writes
                else "Durable writes are OFF: an acknowledged write may be lost in a crash.",
                "Each identity has its own bearer credential and role; not-found and "
                "not-yours get the same answer.",
                *facts.limits,
            ),
        ),
        DpiaSection(
            "Residual risks",
            (),
            (
                "Recognition by released values: a recipient who also holds data of the "
                "same population could recognise persons by their released values. "
                "Mitigation: release the fewest fields that answer the question.",
                "Frequency of tokens: the broker's operator learns how common each token is; "
                "a very common value of a weak key could be guessed. Mitigation: the spec "
                "linter refuses such keys; tokens never leave the broker.",
                "Linkage errors: a false link joins two people's records, a missed link "
                "splits one. Mitigation: the linkage report and its precision and recall.",
                "Stable pseudonyms: a researcher can follow a person across releases of "
                "this agreement (never across agreements).",
                "Compromise of the broker host: the operator's secrets and the store "
                "together would expose the linked payload fields (never identifiers).",
            ),
        ),
        DpiaSection(
            "Review",
            (
                "Review dates: " + (", ".join(str(d) for d in terms.review_dates) or _NOT_RECORDED),
                "Sources: docs/token-format.md (what tokens leak), docs/agreements.md "
                "(threats and limits), docs/dpia.md (this pack).",
            ),
        ),
    ]
    return title, sections


def _md(text: str) -> str:
    """One line, with ``<`` as ``&lt;`` so that no tag in the terms renders as HTML."""
    return " ".join(text.split()).replace("<", "&lt;")


def _md_cell(text: str) -> str:
    return _md(text).replace("|", "\\|")


def _markdown(title: str, sections: list[DpiaSection]) -> str:
    lines = [f"# {_md(title)}", ""]
    for section in sections:
        lines += [f"## {section.heading}", ""]
        for paragraph in section.paragraphs:
            lines += [_md(paragraph), ""]
        if section.bullets:
            lines += [f"- {_md(b)}" for b in section.bullets] + [""]
        if section.header:
            lines.append("| " + " | ".join(section.header) + " |")
            lines.append("|" + "---|" * len(section.header))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in section.rows]
            lines.append("")
    return "\n".join(lines)


_HTML = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!doctype html>
<html lang="en-GB">
<head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto;line-height:1.45}
table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3rem .5rem;
text-align:left;vertical-align:top}</style></head>
<body>
<h1>{{ title }}</h1>
{% for s in sections %}<section>
<h2>{{ s.heading }}</h2>
{% for p in s.paragraphs %}<p>{{ p }}</p>
{% endfor %}{% if s.bullets %}<ul>{% for b in s.bullets %}<li>{{ b }}</li>{% endfor %}</ul>
{% endif %}{% if s.header %}<table><thead><tr>
{% for h in s.header %}<th scope="col">{{ h }}</th>{% endfor %}
</tr></thead><tbody>
{% for row in s.rows %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% endif %}</section>
{% endfor %}</body>
</html>
"""
)


def render_dpia(
    agreement: Agreement,
    *,
    datasets: dict[str, DatasetInfoOut],
    facts: DeploymentFacts,
    fmt: DpiaFormat = DpiaFormat.MARKDOWN,
    labels: Labels | None = None,
    now: datetime | None = None,
) -> str:
    """The pack as Markdown or HTML (every value escaped in HTML).

    Args:
        agreement: the agreement the pack is for.
        datasets: declarations of its datasets, by dataset id.
        facts: the deployment's security measures.
        fmt: Markdown or HTML.
        labels: organisation display names.
        now: the time of writing.
    """
    title, sections = build_dpia(agreement, datasets=datasets, facts=facts, labels=labels, now=now)
    if fmt is DpiaFormat.HTML:
        return _HTML.render(title=title, sections=sections)
    return _markdown(title, sections)
