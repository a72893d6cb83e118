"""The public register: every agreement that was ever active, in words anyone can read.

For each agreement, the columns of NHS England's Data Release Register and the ICO data
sharing code: its title, purpose and objective, legal basis (the UK GDPR Article 6 basis
and Article 9 condition, and what meets the common-law duty of confidentiality), kind and
access method (a record-level cohort, counts under a named disclosure-control rule, or a
direct-care return), whether opt-outs were applied and how (``opt_outs_text``: at the
source, by each organisation's own check, and through opt-out registers), whether
sublicensing is allowed, the
controllers, processors, organisations whose data it uses and the recipients, the datasets
and the fields released from each (the data items), the DPIA reference, its dates,
retention and review dates, its status today, and how many releases were made under it,
in all and per month (counted from the audit log).
The same rows are served as HTML, JSON and CSV (``broker/api/pages.py``). Everything here
is public by design: agreement terms, never a record, identifier, token or reference.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime

from broker.agreements import Agreement, list_agreements
from broker.audit import releases_by_agreement, releases_by_month
from broker.disclosure import profile_of
from broker.labels import CONFIDENTIALITY_TEXT
from broker.store.client import Store
from keys.wire_release import AggregateControl, AgreementKind, AgreementStatus, AgreementTerms

__all__ = [
    "ACCESS_TEXT",
    "CSV_COLUMNS",
    "KIND_TEXT",
    "STATUS_TEXT",
    "RegisterDataset",
    "RegisterEntry",
    "aggregate_rule",
    "build_register",
    "ever_active",
    "opt_outs_text",
    "register_csv",
]

KIND_TEXT: dict[AgreementKind, str] = {
    AgreementKind.RESEARCH_RECORD_LEVEL: "Research: pseudonymised records",
    AgreementKind.RESEARCH_AGGREGATE: "Research: counts only",
    AgreementKind.DIRECT_CARE: "Direct care: back to the organisations caring for patients",
}
"""Plain-English names of the agreement kinds."""

ACCESS_TEXT: dict[AgreementKind, str] = {
    AgreementKind.RESEARCH_RECORD_LEVEL: "Record-level: a pseudonymised cohort, one row a person",
    AgreementKind.RESEARCH_AGGREGATE: "Aggregate: counts only, under a small-number rule",
    AgreementKind.DIRECT_CARE: "Direct-care return: each organisation's own patients only",
}
"""How the recipients access the data, in the words of NHS England's release register."""

STATUS_TEXT: dict[AgreementStatus, str] = {
    AgreementStatus.DRAFT: "Draft",
    AgreementStatus.APPROVED: "Approved, not started",
    AgreementStatus.ACTIVE: "Active",
    AgreementStatus.EXPIRED: "Ended",
    AgreementStatus.REVOKED: "Revoked",
}
"""Plain-English names of the statuses."""

CSV_COLUMNS = (
    "agreement",
    "title",
    "purpose",
    "objective",
    "legal_basis",
    "article_6",
    "article_9",
    "confidentiality_basis",
    "kind",
    "access_method",
    "sdc_profile",
    "sdc_rule",
    "status",
    "start",
    "end",
    "controllers",
    "processors",
    "organisations",
    "recipients",
    "datasets_and_fields",
    "opt_outs_apply",
    "opt_outs_text",
    "sublicensing",
    "dpia_reference",
    "retention_until",
    "review_dates",
    "min_cell_size",
    "releases",
    "releases_by_month",
    "revoked_on",
)


@dataclass(frozen=True, slots=True)
class RegisterDataset:
    """A dataset an agreement uses and the fields released from it."""

    organisation: str
    name: str
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RegisterEntry:
    """One agreement as the public sees it."""

    agreement: str
    title: str
    purpose: str
    objective: str
    legal_basis: str
    article_6: str
    article_9: str
    confidentiality_basis: str
    confidentiality_text: str
    kind: str
    kind_text: str
    access_text: str
    sdc_profile: str
    """The named profile, ``suppress`` or ``round`` (no profile), or empty (no counts)."""
    sdc_rule: str
    status: str
    status_text: str
    start: date
    end: date
    controllers: tuple[str, ...]
    processors: tuple[str, ...]
    organisations: tuple[str, ...]
    recipients: tuple[str, ...]
    datasets: tuple[RegisterDataset, ...]
    opt_outs_apply: bool
    opt_outs_text: str
    """How opt-outs are applied, in one sentence (:func:`opt_outs_text`)."""
    sublicensing: bool
    dpia_reference: str
    retention_until: date | None
    review_dates: tuple[date, ...]
    min_cell_size: int
    releases: int
    releases_by_month: tuple[tuple[str, int], ...]
    """(UTC month ``YYYY-MM``, releases that month), oldest first."""
    revoked_on: date | None

    @property
    def months_text(self) -> tuple[tuple[str, int], ...]:
        """:attr:`releases_by_month` with each month in words (``December 2026``)."""
        return tuple(
            (datetime.strptime(month, "%Y-%m").strftime("%B %Y"), count)
            for month, count in self.releases_by_month
        )

    def to_dict(self) -> dict[str, object]:
        """The entry as JSON-able data."""
        return {
            "agreement": self.agreement,
            "title": self.title,
            "purpose": self.purpose,
            "objective": self.objective,
            "legal_basis": self.legal_basis,
            "article_6": self.article_6,
            "article_9": self.article_9,
            "confidentiality_basis": self.confidentiality_basis,
            "kind": self.kind,
            "access_method": self.access_text,
            "sdc_profile": self.sdc_profile,
            "sdc_rule": self.sdc_rule,
            "status": self.status,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "controllers": list(self.controllers),
            "processors": list(self.processors),
            "organisations": list(self.organisations),
            "recipients": list(self.recipients),
            "datasets": [
                {"organisation": d.organisation, "name": d.name, "fields": list(d.fields)}
                for d in self.datasets
            ],
            "opt_outs_apply": self.opt_outs_apply,
            "opt_outs_text": self.opt_outs_text,
            "sublicensing": self.sublicensing,
            "dpia_reference": self.dpia_reference,
            "retention_until": self.retention_until.isoformat() if self.retention_until else None,
            "review_dates": [d.isoformat() for d in self.review_dates],
            "min_cell_size": self.min_cell_size,
            "releases": self.releases,
            "releases_by_month": dict(self.releases_by_month),
            "revoked_on": self.revoked_on.isoformat() if self.revoked_on else None,
        }


def _day(iso: str) -> date:
    return datetime.fromisoformat(iso).astimezone(UTC).date()


def aggregate_rule(terms: AgreementTerms) -> tuple[str, str]:
    """The small-number rule of an aggregate agreement: (profile name, rule in one line).

    Both are empty for agreements that release no counts.
    """
    if terms.kind is not AgreementKind.RESEARCH_AGGREGATE:
        return "", ""
    profile = profile_of(terms)
    if profile is not None and terms.sdc_profile is not None:
        return terms.sdc_profile.value, profile.rule
    if terms.aggregate_control is AggregateControl.ROUND:
        rule = f"every count rounded to the nearest {terms.rounding_base}, halves up"
    else:
        rule = f"counts from 1 to {terms.min_cell_size - 1} suppressed, others exact"
    return terms.aggregate_control.value, rule


def opt_outs_text(terms: AgreementTerms, *, applied: bool) -> str:
    """How an agreement applies opt-outs, in one sentence for the public and the DPIA."""
    if not applied:
        if terms.kind is AgreementKind.DIRECT_CARE:
            return "Not applied: opt-outs do not apply to individual (direct) care."
        return "Not applied."
    registers = "people on an opt-out register the operator designated are left out"
    if terms.kind is AgreementKind.DIRECT_CARE:
        return (
            f"Opt-out registers applied: {registers}; the National Data Opt-out and Type 1 "
            "opt-outs do not apply to individual (direct) care."
        )
    return (
        "Applied: people with a National Data Opt-out (checked by each organisation before "
        "its data leaves it, at most "
        f"{terms.opt_out_max_age_days} days before release) or a Type 1 opt-out at their GP "
        f"practice are left out of every release, and so are {registers}. Only a flag per "
        "record travels; nobody is given a list of who opted out."
    )


def ever_active(agreement: Agreement, *, today: date) -> bool:
    """Whether the agreement was active on at least one day up to ``today``.

    Active means approved by every contributing organisation, within its dates and not
    revoked: the window from the later of the start date and the last approval to the
    earlier of the end date, the revocation and today must hold a day.
    """
    if not agreement.fully_approved or not agreement.contributors:
        return False
    approved = max(_day(agreement.approvals[org]) for org in agreement.contributors)
    first = max(agreement.terms.start, approved)
    last = min(agreement.terms.end, today)
    if agreement.revoked_at is not None:
        last = min(last, _day(agreement.revoked_at))
    return first <= last


def build_register(store: Store, *, now: datetime | None = None) -> list[RegisterEntry]:
    """Every agreement ever active, newest start first.

    Args:
        store: the broker's store.
        now: the time to judge status at (default: now, UTC).
    """
    moment = now or datetime.now(UTC)
    today = moment.astimezone(UTC).date()
    releases = releases_by_agreement(store)
    monthly = releases_by_month(store)
    entries: list[RegisterEntry] = []
    for agreement in list_agreements(store):
        if not ever_active(agreement, today=today):
            continue
        terms = agreement.terms
        status = agreement.status(moment)
        recipients = terms.researchers if terms.researchers else terms.organisations
        basis = terms.confidentiality_basis.value if terms.confidentiality_basis else ""
        sdc_profile, sdc_rule = aggregate_rule(terms)
        entries.append(
            RegisterEntry(
                agreement=agreement.id,
                title=terms.title,
                purpose=terms.purpose,
                objective=terms.objective or "",
                legal_basis=terms.legal_basis,
                article_6=terms.article_6 or "",
                article_9=terms.article_9 or "",
                confidentiality_basis=basis,
                confidentiality_text=CONFIDENTIALITY_TEXT.get(basis, ""),
                kind=terms.kind.value,
                kind_text=KIND_TEXT[terms.kind],
                access_text=ACCESS_TEXT[terms.kind],
                sdc_profile=sdc_profile,
                sdc_rule=sdc_rule,
                status=status.value,
                status_text=STATUS_TEXT[status],
                start=terms.start,
                end=terms.end,
                controllers=tuple(terms.controllers),
                processors=tuple(terms.processors),
                organisations=tuple(agreement.contributors),
                recipients=tuple(recipients),
                datasets=tuple(
                    RegisterDataset(organisation=d.org, name=d.name, fields=tuple(d.fields))
                    for d in terms.datasets
                ),
                opt_outs_apply=agreement.opt_outs_apply,
                opt_outs_text=opt_outs_text(terms, applied=agreement.opt_outs_apply),
                sublicensing=terms.sublicensing,
                dpia_reference=terms.dpia_reference or "",
                retention_until=terms.retention_until,
                review_dates=tuple(terms.review_dates),
                min_cell_size=terms.min_cell_size,
                releases=releases.get(agreement.id, 0),
                releases_by_month=tuple(sorted(monthly.get(agreement.id, {}).items())),
                revoked_on=_day(agreement.revoked_at) if agreement.revoked_at else None,
            )
        )
    entries.sort(key=lambda e: (e.start, e.agreement), reverse=True)
    return entries


def _cell(text: str) -> str:
    """Neutralise spreadsheet formulas: a cell that starts like one gets a leading quote."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def register_csv(entries: list[RegisterEntry]) -> str:
    """The register as CSV, one row per agreement (formula-safe)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        datasets = "; ".join(
            f"{d.organisation}/{d.name}: {', '.join(d.fields) or 'no fields'}" for d in e.datasets
        )
        row = [
            e.agreement,
            e.title,
            e.purpose,
            e.objective,
            e.legal_basis,
            e.article_6,
            e.article_9,
            e.confidentiality_basis,
            e.kind,
            e.access_text,
            e.sdc_profile,
            e.sdc_rule,
            e.status,
            e.start.isoformat(),
            e.end.isoformat(),
            "; ".join(e.controllers),
            "; ".join(e.processors),
            " ".join(e.organisations),
            " ".join(e.recipients),
            datasets,
            "yes" if e.opt_outs_apply else "no",
            e.opt_outs_text,
            "yes" if e.sublicensing else "no",
            e.dpia_reference,
            e.retention_until.isoformat() if e.retention_until else "",
            " ".join(d.isoformat() for d in e.review_dates),
            str(e.min_cell_size),
            str(e.releases),
            "; ".join(f"{month}: {count}" for month, count in e.releases_by_month),
            e.revoked_on.isoformat() if e.revoked_on else "",
        ]
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()
