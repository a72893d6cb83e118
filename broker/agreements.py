"""Data-sharing agreements: terms, lifecycle and who may see or use one.

Lifecycle::

    draft ──(every contributing organisation approves, each with its own credential)──▶
    approved ──(start date)──▶ active ──(after end date)──▶ expired
        any state ──(revoke: the operator, or a contributing organisation)──▶ revoked

A contributing organisation is one whose dataset the agreement uses. Status is computed
from the stored facts and the time (``now=``), so expiry needs no job and revocation takes
effect on the very next request. Nothing is released unless the status is ``active``
(:func:`require_release`).

Dates are whole UTC days: an agreement is active from the start of ``start`` to the end
of ``end``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.audit import append_audit
from broker.errors import BadRequestError, ConflictError, NotFoundOrForbiddenError
from broker.store.agreements_store import (
    StoredAgreement,
    add_approval,
    insert_agreement,
    list_agreement_ids,
    load_agreement,
    mark_revoked,
)
from broker.store.client import Store
from broker.store.datasets import get_dataset
from broker.store.identities import Identity, find_identity
from keys.errors import BrokerError
from keys.wire import DatasetInfoOut, DatasetKind, Role
from keys.wire_release import (
    AgreementKind,
    AgreementOut,
    AgreementStatus,
    AgreementTerms,
)

__all__ = [
    "AGREEMENT_ID_PATTERN",
    "MAX_AGGREGATE_FIELDS",
    "Agreement",
    "AgreementInactiveError",
    "NotReleasedError",
    "StaleOptOutCheckError",
    "WrongAgreementKindError",
    "agreement_datasets",
    "approve_agreement",
    "create_agreement",
    "get_agreement",
    "list_agreements",
    "may_see",
    "require_release",
    "revoke_agreement",
]

AGREEMENT_ID_PATTERN = r"^dsa-[0-9a-f]{10}$"
MAX_AGGREGATE_FIELDS = 4
"""Most released fields of an aggregate agreement: its counts are protected as one table."""


class AgreementInactiveError(BrokerError):
    """The agreement is not active: draft, approved but not started, expired or revoked."""

    exit_code = 24
    status_code = 403
    code = "agreement_not_active"


class NotReleasedError(BrokerError):
    """A field or dataset the request names is not released by the agreement."""

    exit_code = 24
    status_code = 403
    code = "not_released"


class StaleOptOutCheckError(ConflictError):
    """A research release would use records whose opt-out check is older than allowed."""

    code = "opt_out_check_stale"


class WrongAgreementKindError(BrokerError):
    """The agreement does not offer this kind of release."""

    exit_code = 24
    status_code = 403
    code = "wrong_agreement_kind"


@dataclass(frozen=True, slots=True)
class Agreement:
    """A data-sharing agreement as the broker holds it.

    Attributes:
        id: the agreement id (``dsa-`` and 10 hex digits), public.
        terms: title, purpose, legal basis, datasets and fields, recipients, dates, …
            (every field is public).
        created_at: ISO time of creation.
        approvals: contributing organisation -> ISO time it approved.
        revoked_at: ISO time of revocation, or ``None``.
    """

    id: str
    terms: AgreementTerms
    created_at: str
    approvals: dict[str, str]
    revoked_at: str | None = None

    @property
    def contributors(self) -> list[str]:
        """Organisations whose datasets the agreement uses (each must approve)."""
        return self.terms.contributors

    @property
    def fully_approved(self) -> bool:
        """True when every contributing organisation approved."""
        return all(org in self.approvals for org in self.contributors)

    @property
    def opt_outs_apply(self) -> bool:
        """Whether opt-out registers remove persons from this agreement's releases."""
        return bool(self.terms.opt_outs_apply)

    def status(self, now: datetime | None = None) -> AgreementStatus:
        """The status at ``now`` (default: the current time)."""
        if self.revoked_at is not None:
            return AgreementStatus.REVOKED
        if not self.fully_approved:
            return AgreementStatus.DRAFT
        today = (now or datetime.now(UTC)).astimezone(UTC).date()
        if today < self.terms.start:
            return AgreementStatus.APPROVED
        if today > self.terms.end:
            return AgreementStatus.EXPIRED
        return AgreementStatus.ACTIVE

    def to_wire(self, now: datetime | None = None) -> AgreementOut:
        """The agreement with its status at ``now``."""
        return AgreementOut(
            id=self.id,
            terms=self.terms,
            status=self.status(now),
            contributors=self.contributors,
            approvals=self.approvals,
            created_at=self.created_at,
            revoked_at=self.revoked_at,
        )


def _from_stored(stored: StoredAgreement) -> Agreement:
    return Agreement(
        id=stored.id,
        terms=AgreementTerms.model_validate_json(stored.terms_json),
        created_at=stored.created_at,
        approvals=stored.approvals,
        revoked_at=stored.revoked_at,
    )


def _iso(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")


def agreement_datasets(store: Store, terms: AgreementTerms) -> dict[str, DatasetInfoOut]:
    """The declarations of the agreement's datasets, by dataset id.

    Raises:
        BadRequestError: a dataset is not declared.
    """
    found: dict[str, DatasetInfoOut] = {}
    for release in terms.datasets:
        try:
            found[release.dataset_id] = get_dataset(store, org=release.org, name=release.name)
        except NotFoundOrForbiddenError:
            raise BadRequestError(f"dataset {release.dataset_id} is not declared") from None
    return found


def _check_terms(store: Store, terms: AgreementTerms) -> None:
    """Check the terms against what the broker holds; every problem at once.

    The governance fields the ICO data sharing code lists are required of a new agreement
    here rather than in the model, so that agreements stored before them still load.
    """
    problems = [f"{name} is required" for name in terms.missing_governance()]
    try:
        declared = agreement_datasets(store, terms)
    except BadRequestError as exc:
        raise BadRequestError("agreement: " + "; ".join([*problems, str(exc)])) from None
    domains = {d.domain for d in declared.values()}
    if len(domains) > 1:
        problems.append("the datasets are in different linkage domains: " + ", ".join(domains))
    for release in terms.datasets:
        info = declared[release.dataset_id]
        if info.kind is DatasetKind.OPT_OUT:
            problems.append(f"{release.dataset_id} is an opt-out register, not a source")
        for name in release.fields:
            if name not in info.payload_columns:
                problems.append(f"{release.dataset_id} has no payload field {name!r}")
    wanted = [(n, Role.RESEARCHER) for n in terms.researchers] + [
        (n, Role.ORG) for n in terms.organisations
    ]
    for name, role in wanted:
        try:
            identity = find_identity(store, name)
        except NotFoundOrForbiddenError:
            identity = None
        if identity is None or identity.role is not role:
            problems.append(f"no {role.value} named {name!r}")
    if terms.kind is AgreementKind.DIRECT_CARE:
        for org in terms.organisations:
            if org not in terms.contributors:
                problems.append(f"{org} receives direct-care returns but has no dataset here")
    if terms.kind is AgreementKind.RESEARCH_AGGREGATE:
        count = len(terms.released_labels())
        if not 1 <= count <= MAX_AGGREGATE_FIELDS:
            problems.append(
                f"an aggregate agreement releases 1 to {MAX_AGGREGATE_FIELDS} fields"
                f" (counts are protected as one table); this one lists {count}"
            )
    if problems:
        raise BadRequestError("agreement: " + "; ".join(problems))


def create_agreement(
    store: Store,
    terms: AgreementTerms,
    *,
    created_by: str,
    role: str,
    now: datetime | None = None,
    new_id: Callable[[], str] = lambda: "dsa-" + secrets.token_hex(5),
) -> Agreement:
    """Check and store a new agreement, in draft until every contributor approves.

    Args:
        store: the broker's store.
        terms: the agreement's terms.
        created_by: who creates it (an identity name, or ``operator``).
        role: that identity's role (for the audit entry).
        now: the time of creation.
        new_id: makes agreement ids.

    Raises:
        BadRequestError: a dataset, field or recipient does not exist or does not fit.
    """
    _check_terms(store, terms)
    when = _iso(now)
    while True:
        agreement_id = new_id()
        if insert_agreement(
            store,
            agreement_id=agreement_id,
            terms_json=terms.model_dump_json(),
            created_at=when,
            created_by=created_by,
        ):
            break
    append_audit(
        store,
        identity=created_by,
        role=role,
        action="agreement.create",
        agreement=agreement_id,
        now=now,
    )
    return Agreement(agreement_id, terms, when, {})


def get_agreement(store: Store, agreement_id: str) -> Agreement:
    """An agreement by id.

    Raises:
        NotFoundOrForbiddenError: no such agreement.
    """
    stored = load_agreement(store, agreement_id)
    if stored is None:
        raise NotFoundOrForbiddenError()
    return _from_stored(stored)


def list_agreements(store: Store) -> list[Agreement]:
    """Every agreement, by id (the public register lists them all)."""
    found = [load_agreement(store, i) for i in list_agreement_ids(store)]
    return [_from_stored(s) for s in found if s is not None]


def may_see(agreement: Agreement, identity: Identity) -> bool:
    """Whether ``identity`` may read the agreement through the API.

    Operators and auditors see every agreement; an organisation those it contributes to
    or receives under; a researcher those naming them. (The public register shows every
    agreement's public terms to everyone.)
    """
    if identity.role in (Role.ADMIN, Role.AUDITOR):
        return True
    terms = agreement.terms
    if identity.role is Role.ORG:
        return identity.name in agreement.contributors or identity.name in terms.organisations
    return identity.name in terms.researchers


def approve_agreement(
    store: Store, agreement_id: str, *, org: Identity, now: datetime | None = None
) -> Agreement:
    """Record a contributing organisation's approval, given with its own credential.

    Raises:
        NotFoundOrForbiddenError: no such agreement, or ``org`` does not contribute to it.
        ConflictError: the agreement is revoked or expired.
    """
    agreement = get_agreement(store, agreement_id)
    if org.role is not Role.ORG or org.name not in agreement.contributors:
        raise NotFoundOrForbiddenError()
    status = agreement.status(now)
    if status in (AgreementStatus.REVOKED, AgreementStatus.EXPIRED):
        raise ConflictError(f"agreement {agreement_id} is {status.value}: it cannot be approved")
    if add_approval(store, agreement_id=agreement_id, org=org.name, when=_iso(now)):
        append_audit(
            store,
            identity=org.name,
            role=org.role.value,
            action="agreement.approve",
            agreement=agreement_id,
            now=now,
        )
    return get_agreement(store, agreement_id)


def revoke_agreement(
    store: Store, agreement_id: str, *, by: str, role: str, now: datetime | None = None
) -> Agreement:
    """Revoke an agreement: nothing more is released under it, from now on.

    The caller decides who may revoke (the operator, or a contributing organisation).

    Raises:
        NotFoundOrForbiddenError: no such agreement.
    """
    get_agreement(store, agreement_id)
    if mark_revoked(store, agreement_id=agreement_id, when=_iso(now), by=by):
        append_audit(
            store,
            identity=by,
            role=role,
            action="agreement.revoke",
            agreement=agreement_id,
            now=now,
        )
    return get_agreement(store, agreement_id)


def require_release(
    store: Store,
    agreement_id: str,
    *,
    identity: Identity,
    kinds: tuple[AgreementKind, ...],
    now: datetime | None = None,
) -> Agreement:
    """The agreement, when ``identity`` may receive a release of one of ``kinds`` now.

    Raises:
        NotFoundOrForbiddenError: no such agreement, or the identity is not named on it.
        WrongAgreementKindError: the agreement offers another kind of release.
        AgreementInactiveError: the agreement is not active.
    """
    agreement = get_agreement(store, agreement_id)
    terms = agreement.terms
    if identity.role is Role.RESEARCHER:
        named = identity.name in terms.researchers
    elif identity.role is Role.ORG:
        named = identity.name in terms.organisations
    else:
        named = False
    if not named:
        raise NotFoundOrForbiddenError()
    if terms.kind not in kinds:
        raise WrongAgreementKindError(
            f"agreement {agreement_id} is a {terms.kind.value} agreement: it offers no such release"
        )
    status = agreement.status(now)
    if status is not AgreementStatus.ACTIVE:
        raise AgreementInactiveError(
            f"agreement {agreement_id} is {status.value}: nothing is released under it"
        )
    return agreement
