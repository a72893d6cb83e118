"""The operator dashboard's content, and its login sessions.

What the page shows: datasets with their quality grade and its trend, the linkage report
with charts of links by match key and by dataset pair (and, where a probabilistic model
is fitted, its m and u per comparison level, an example pair's waterfall and the
distribution of match probabilities: :mod:`broker.probabilistic_charts`), agreements
awaiting approval, credentials (names, roles, status), and the audit tail with the
verification status. All of it is counts, names and terms: never an identifier, token or
reference.

Sessions: logging in with an admin credential creates a random session id (the only thing
the browser keeps, in a cookie). Redis keeps, under the keyed digest of that id (so a copy
of the AOF holds no usable session), the identity, the keyed digest of the credential it
logged in with and a CSRF token for the page's forms, with an idle expiry. Every request
re-checks that this credential is still the identity's live admin credential, so rotating
or revoking it ends all of its sessions at once.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.agreements import list_agreements
from broker.audit import AuditEntry, append_audit, audit_count, read_audit, verify_audit
from broker.linkage_report import build_linkage_report
from broker.probabilistic_charts import ProbabilisticCharts, probabilistic_charts
from broker.register import KIND_TEXT
from broker.store.client import Store
from broker.store.dataset_quality import GradeAt, grade_history
from broker.store.datasets import dataset_id, list_all_datasets
from broker.store.identities import Identity, identity_for_credential, list_identities
from broker.store.sessions import (
    clear_sign_in_failures,
    count_sign_in_failure,
    delete_session,
    put_session,
    sign_in_failures,
    touch_session,
)
from keys.derive import digest_session_id
from keys.wire import Role
from keys.wire_release import AgreementStatus

__all__ = [
    "GRADE_ORDER",
    "AuditRow",
    "AuditStatus",
    "Bar",
    "BarChart",
    "CredentialRow",
    "Dashboard",
    "DatasetRow",
    "DomainLinkage",
    "PendingAgreement",
    "Session",
    "SignIn",
    "bar_chart",
    "build_dashboard",
    "end_session",
    "grade_trend",
    "load_session",
    "sign_in",
    "start_session",
]

logger = logging.getLogger(__name__)

GRADE_ORDER = {"Not rated": 0, "Bronze": 1, "Silver": 2, "Gold": 3}
"""Quality grades from worst to best."""

_AUDIT_TAIL = 15


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of a horizontal bar chart, laid out in SVG user units (label above bar)."""

    label: str
    value: int
    y: int
    width: int


@dataclass(frozen=True, slots=True)
class BarChart:
    """A horizontal bar chart, ready for an inline SVG."""

    title: str
    bars: tuple[Bar, ...]
    width: int
    height: int
    label_height: int
    bar_height: int


def bar_chart(title: str, values: dict[str, int], *, width: int = 640) -> BarChart:
    """Lay out ``values`` (largest first) as horizontal bars under ``title``.

    Each bar has its label on the line above it, so long dataset names fit.
    """
    label_height, bar_height, gap = 18, 20, 10
    space = width - 80
    top = max(values.values(), default=0)
    ordered = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    row = label_height + bar_height + gap
    bars = tuple(
        Bar(
            label=label,
            value=value,
            y=i * row,
            width=max(1, round(space * value / top)) if top else 0,
        )
        for i, (label, value) in enumerate(ordered)
    )
    return BarChart(title, bars, width, max(1, len(bars)) * row, label_height, bar_height)


def grade_trend(history: list[GradeAt]) -> str:
    """``improving``, ``worse``, ``steady``, ``first batch`` or ``no grade yet``."""
    if not history:
        return "no grade yet"
    if len(history) == 1:
        return "first batch"
    before, now = GRADE_ORDER.get(history[-2].grade, 0), GRADE_ORDER.get(history[-1].grade, 0)
    return "improving" if now > before else "worse" if now < before else "steady"


@dataclass(frozen=True, slots=True)
class DatasetRow:
    """A dataset with its records, its latest grade and the grades before it."""

    dataset: str
    organisation: str
    domain: str
    description: str
    records: int
    linked_records: int
    grade: str
    history: tuple[str, ...]
    trend: str
    points: str
    """SVG polyline points of the grade history (x across, better grades higher)."""


@dataclass(frozen=True, slots=True)
class DomainLinkage:
    """The linkage report of one domain, with its two charts."""

    domain: str
    records: int
    persons: int
    linked_persons: int
    ambiguous_tokens: int
    conflicting_records: int
    by_key: BarChart
    by_pair: BarChart
    probabilistic: ProbabilisticCharts | None = None


@dataclass(frozen=True, slots=True)
class PendingAgreement:
    """An agreement still waiting for approvals."""

    title: str
    kind_text: str
    approved: tuple[str, ...]
    waiting: tuple[str, ...]
    start: str
    end: str


@dataclass(frozen=True, slots=True)
class CredentialRow:
    """An identity: name, role and whether its credential works."""

    name: str
    role: str
    status: str
    created: str
    is_self: bool


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit entry as the dashboard lists it."""

    position: int
    time: str
    identity: str
    role: str
    organisation: str
    action: str
    agreement: str
    dataset: str
    counts: str


@dataclass(frozen=True, slots=True)
class AuditStatus:
    """The outcome of verifying the audit log when the page was made."""

    ok: bool
    summary: str
    entries: int
    checkpoints: int
    last_checkpoint: int | None
    key_id: str


@dataclass(frozen=True, slots=True)
class Dashboard:
    """Everything the dashboard page shows."""

    generated_at: str
    datasets: tuple[DatasetRow, ...]
    domains: tuple[DomainLinkage, ...]
    pending: tuple[PendingAgreement, ...]
    credentials: tuple[CredentialRow, ...]
    audit_tail: tuple[AuditRow, ...]
    audit: AuditStatus


def _points(history: list[GradeAt]) -> str:
    if not history:
        return ""
    step = 72 / max(1, len(history) - 1)
    return " ".join(
        f"{4 + round(i * step)},{20 - 5 * GRADE_ORDER.get(h.grade, 0)}"
        for i, h in enumerate(history)
    )


def _audit_row(entry: AuditEntry) -> AuditRow:
    return AuditRow(
        position=entry.seq,
        time=entry.time.replace("T", " ")[:19],
        identity=entry.identity,
        role=entry.role,
        organisation=entry.organisation,
        action=entry.action,
        agreement=entry.agreement,
        dataset=entry.dataset,
        counts=", ".join(f"{k} {v:,}" for k, v in sorted(entry.counts.items())),
    )


def build_dashboard(
    store: Store,
    *,
    audit_public_key: bytes,
    viewer: Identity,
    now: datetime | None = None,
) -> Dashboard:
    """Gather the dashboard's content.

    Args:
        store: the broker's store.
        audit_public_key: verifies the audit checkpoints.
        viewer: the admin looking (their own credential offers no revoke button).
        now: the time to judge agreements at.
    """
    moment = now or datetime.now(UTC)
    report = build_linkage_report(store)
    counted = {d.dataset: d for section in report.domains for d in section.datasets}
    rows: list[DatasetRow] = []
    for declared in list_all_datasets(store):
        ident = dataset_id(declared.org, declared.name)
        history = grade_history(store, ident)
        held = counted.get(ident)
        rows.append(
            DatasetRow(
                dataset=ident,
                organisation=declared.org,
                domain=declared.domain,
                description=declared.description,
                records=held.records if held else 0,
                linked_records=held.linked_records if held else 0,
                grade=history[-1].grade if history else "No grade yet",
                history=tuple(h.grade for h in history),
                trend=grade_trend(history),
                points=_points(history),
            )
        )
    domains = tuple(
        DomainLinkage(
            domain=s.domain,
            records=s.records,
            persons=s.persons,
            linked_persons=s.linked_persons,
            ambiguous_tokens=s.ambiguous_tokens,
            conflicting_records=s.conflicting_records,
            by_key=bar_chart(f"Records linked by match key, {s.domain}", s.links_by_key),
            by_pair=bar_chart(
                f"Persons by dataset pair, {s.domain}",
                {pair.replace("|", " and "): n for pair, n in s.links_by_dataset_pair.items()},
            ),
            probabilistic=None
            if s.probabilistic is None
            else probabilistic_charts(s.domain, s.probabilistic),
        )
        for s in report.domains
    )
    pending = tuple(
        PendingAgreement(
            title=a.terms.title,
            kind_text=KIND_TEXT[a.terms.kind],
            approved=tuple(org for org in a.contributors if org in a.approvals),
            waiting=tuple(org for org in a.contributors if org not in a.approvals),
            start=a.terms.start.isoformat(),
            end=a.terms.end.isoformat(),
        )
        for a in list_agreements(store)
        if a.status(moment) is AgreementStatus.DRAFT
    )
    credentials = tuple(
        CredentialRow(
            name=i.name,
            role=i.role.value,
            status="revoked" if i.revoked else "active",
            created=i.created_at[:10],
            is_self=i.id == viewer.id,
        )
        for i in list_identities(store)
    )
    total = audit_count(store)
    tail = read_audit(store, start=max(0, total - _AUDIT_TAIL), count=_AUDIT_TAIL)
    verification = verify_audit(store, audit_public_key)
    return Dashboard(
        generated_at=moment.isoformat(timespec="seconds"),
        datasets=tuple(rows),
        domains=domains,
        pending=pending,
        credentials=credentials,
        audit_tail=tuple(_audit_row(e) for e in reversed(tail)),
        audit=AuditStatus(
            ok=verification.ok,
            summary=verification.summary(),
            entries=verification.entries,
            checkpoints=verification.valid_checkpoints,
            last_checkpoint=verification.last_checkpoint,
            key_id=verification.key_id,
        ),
    )


# Sessions -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in operator: who, and the CSRF token their forms carry."""

    session_id: str
    identity: Identity
    csrf: str


def start_session(
    store: Store, *, credential_digest: str, secret: bytes, ttl: int
) -> Session | None:
    """Log in: a new session for the live admin the credential belongs to, else ``None``.

    Args:
        store: the broker's store.
        credential_digest: the keyed digest of the credential typed in (never the credential).
        secret: keys the stored digest of the session id (the broker's credential secret).
        ttl: idle lifetime in seconds.
    """
    identity = identity_for_credential(store, credential_digest)
    if identity is None or identity.role is not Role.ADMIN:
        return None
    session = Session(secrets.token_urlsafe(32), identity, secrets.token_urlsafe(32))
    data = json.dumps(
        {"identity": identity.id, "credential": credential_digest, "csrf": session.csrf}
    ).encode()
    put_session(store, digest_session_id(secret, session.session_id), data, ttl=ttl)
    return session


def load_session(store: Store, session_id: str, *, secret: bytes, ttl: int) -> Session | None:
    """The live session ``session_id`` (its expiry pushed on), or ``None``.

    ``None`` too (and the session is dropped) when the credential it was opened with was
    rotated or revoked, or its identity is no longer an admin.
    """
    if not session_id or len(session_id) > 128:
        return None
    key = digest_session_id(secret, session_id)
    raw = touch_session(store, key, ttl=ttl)
    if raw is None:
        return None
    data = json.loads(raw)
    identity = identity_for_credential(store, str(data.get("credential", "")))
    if identity is None or identity.id != data.get("identity") or identity.role is not Role.ADMIN:
        delete_session(store, key)
        return None
    return Session(session_id, identity, str(data["csrf"]))


@dataclass(frozen=True, slots=True)
class SignIn:
    """The outcome of a sign-in: a session, or none (``locked``: not even checked)."""

    session: Session | None
    locked: bool


def sign_in(
    store: Store,
    *,
    credential_digest: str | None,
    client: str,
    secret: bytes,
    ttl: int,
    max_failures: int,
    lockout: int,
) -> SignIn:
    """Sign in to the dashboard, with failures audited and rate-limited per client address.

    After ``max_failures`` failures from ``client`` (each restarting a ``lockout``-second
    window) the address is locked out: its attempts are refused unchecked and unaudited
    (so a flood cannot fill the audit log) until it has been quiet for ``lockout`` seconds.
    Credentials are 256 random bits, so the limit is against noise and floods more than
    guessing; it is per address because a failed attempt names no account.

    Args:
        store: the broker's store.
        credential_digest: the keyed digest of the credential typed in, ``None`` if empty.
        client: the client's address (logged, and the key of the failure count).
        secret: keys the stored digest of the session id.
        ttl: the session's idle lifetime in seconds.
        max_failures: failures that lock an address out.
        lockout: seconds failures count for, and a lockout lasts.
    """
    if sign_in_failures(store, client) >= max_failures:
        logger.warning("dashboard sign-in from %s refused: locked out", client)
        return SignIn(None, locked=True)
    session = None
    if credential_digest is not None:
        session = start_session(store, credential_digest=credential_digest, secret=secret, ttl=ttl)
    if session is None:
        failures = count_sign_in_failure(store, client, window=lockout)
        holder = identity_for_credential(store, credential_digest) if credential_digest else None
        append_audit(
            store,
            identity=holder.name if holder else "unknown",
            role=holder.role.value if holder else "anonymous",
            action="dashboard.login.failed",
            counts={"failures": failures},
        )
        logger.warning("failed dashboard sign-in from %s (%d in a row)", client, failures)
        return SignIn(None, locked=failures >= max_failures)
    clear_sign_in_failures(store, client)
    append_audit(
        store,
        identity=session.identity.name,
        role=session.identity.role.value,
        action="dashboard.login",
    )
    logger.info("dashboard sign-in of %s from %s", session.identity.name, client)
    return SignIn(session, locked=False)


def end_session(store: Store, session_id: str, *, secret: bytes) -> None:
    """Log out."""
    delete_session(store, digest_session_id(secret, session_id))
