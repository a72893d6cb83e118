"""The public register: every agreement that was ever active, in words anyone can read.

For each agreement: its title, purpose, legal basis, kind, the organisations whose data
it uses and the recipients, the datasets and the fields released from each, its dates,
its status today, and how many releases were made under it (counted from the audit log).
The same rows are served as HTML, JSON and CSV (``broker/api/pages.py``). Everything here
is public by design: agreement terms, never a record, identifier, token or reference.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime

from broker.agreements import Agreement, list_agreements
from broker.audit import releases_by_agreement
from broker.store.client import Store
from keys.wire_release import AgreementKind, AgreementStatus

__all__ = [
    "CSV_COLUMNS",
    "KIND_TEXT",
    "STATUS_TEXT",
    "RegisterDataset",
    "RegisterEntry",
    "build_register",
    "ever_active",
    "register_csv",
]

KIND_TEXT: dict[AgreementKind, str] = {
    AgreementKind.RESEARCH_RECORD_LEVEL: "Research: pseudonymised records",
    AgreementKind.RESEARCH_AGGREGATE: "Research: counts only",
    AgreementKind.DIRECT_CARE: "Direct care: back to the organisations caring for patients",
}
"""Plain-English names of the agreement kinds."""

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
    "legal_basis",
    "kind",
    "status",
    "start",
    "end",
    "organisations",
    "recipients",
    "datasets_and_fields",
    "opt_outs_apply",
    "min_cell_size",
    "releases",
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
    legal_basis: str
    kind: str
    kind_text: str
    status: str
    status_text: str
    start: date
    end: date
    organisations: tuple[str, ...]
    recipients: tuple[str, ...]
    datasets: tuple[RegisterDataset, ...]
    opt_outs_apply: bool
    min_cell_size: int
    releases: int
    revoked_on: date | None

    def to_dict(self) -> dict[str, object]:
        """The entry as JSON-able data."""
        return {
            "agreement": self.agreement,
            "title": self.title,
            "purpose": self.purpose,
            "legal_basis": self.legal_basis,
            "kind": self.kind,
            "status": self.status,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "organisations": list(self.organisations),
            "recipients": list(self.recipients),
            "datasets": [
                {"organisation": d.organisation, "name": d.name, "fields": list(d.fields)}
                for d in self.datasets
            ],
            "opt_outs_apply": self.opt_outs_apply,
            "min_cell_size": self.min_cell_size,
            "releases": self.releases,
            "revoked_on": self.revoked_on.isoformat() if self.revoked_on else None,
        }


def _day(iso: str) -> date:
    return datetime.fromisoformat(iso).astimezone(UTC).date()


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
    entries: list[RegisterEntry] = []
    for agreement in list_agreements(store):
        if not ever_active(agreement, today=today):
            continue
        terms = agreement.terms
        status = agreement.status(moment)
        recipients = terms.researchers if terms.researchers else terms.organisations
        entries.append(
            RegisterEntry(
                agreement=agreement.id,
                title=terms.title,
                purpose=terms.purpose,
                legal_basis=terms.legal_basis,
                kind=terms.kind.value,
                kind_text=KIND_TEXT[terms.kind],
                status=status.value,
                status_text=STATUS_TEXT[status],
                start=terms.start,
                end=terms.end,
                organisations=tuple(agreement.contributors),
                recipients=tuple(recipients),
                datasets=tuple(
                    RegisterDataset(organisation=d.org, name=d.name, fields=tuple(d.fields))
                    for d in terms.datasets
                ),
                opt_outs_apply=agreement.opt_outs_apply,
                min_cell_size=terms.min_cell_size,
                releases=releases.get(agreement.id, 0),
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
            e.legal_basis,
            e.kind,
            e.status,
            e.start.isoformat(),
            e.end.isoformat(),
            " ".join(e.organisations),
            " ".join(e.recipients),
            datasets,
            "yes" if e.opt_outs_apply else "no",
            str(e.min_cell_size),
            str(e.releases),
            e.revoked_on.isoformat() if e.revoked_on else "",
        ]
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()
