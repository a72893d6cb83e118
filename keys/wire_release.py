"""HTTP models of data-sharing agreements and releases, shared by the SDK and the broker.

An agreement's *terms* are what the operator writes (``AGREEMENT.toml``) and what the
public register shows. Releases carry project pseudonyms, released payload values and
counts; a direct-care release also carries the requesting organisation's *own*
references (hex), which only its local index can turn back into local ids. No model here
holds a token, another organisation's reference or an internal id.

Released columns are labelled ``ORG/DATASET.FIELD`` (:func:`field_label`).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from keys.wire import Name

__all__ = [
    "LEGAL_BASES",
    "LINK_QUALITY_COLUMN",
    "REQUIRED_GOVERNANCE_FIELDS",
    "AggregateCell",
    "AggregateControl",
    "AggregateOut",
    "AggregateRequest",
    "AgreementKind",
    "AgreementOut",
    "AgreementStatus",
    "AgreementTerms",
    "CohortOut",
    "CohortRequest",
    "ConfidentialityBasis",
    "DatasetRelease",
    "LinkedOut",
    "LinkedRow",
    "OpenSafelyRounding",
    "Predicate",
    "PredicateOp",
    "SdcProfile",
    "field_label",
]

LEGAL_BASES: tuple[str, ...] = (
    "UK GDPR Art 6(1)(e) with Art 9(2)(h)",
    "UK GDPR Art 6(1)(e) with Art 9(2)(j)",
    "Section 251 of the NHS Act 2006",
    "Digital Economy Act 2017",
    "UK GDPR Art 6(1)(c) with Art 9(2)(i)",
)
"""Common UK gateways offered for ``legal_basis`` (free text: others are accepted)."""

_Text = Annotated[str, Field(min_length=1, max_length=5000)]
_Field = Annotated[str, Field(min_length=1, max_length=64)]
_Label = Annotated[str, Field(min_length=1, max_length=200)]
_Short = Annotated[str, Field(min_length=1, max_length=500)]
_Party = Annotated[str, Field(min_length=1, max_length=200)]


LINK_QUALITY_COLUMN = "link_quality"
"""The last column of every cohort and direct-care return: how sure the row's link is
(a match key name, a probability band or ``single``; docs/agreements.md)."""


def field_label(org: str, dataset: str, field: str) -> str:
    """The column label of a released field: ``ORG/DATASET.FIELD``."""
    return f"{org}/{dataset}.{field}"


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AgreementKind(StrEnum):
    """What an agreement releases, and to whom."""

    RESEARCH_RECORD_LEVEL = "research_record_level"
    """Pseudonymised record-level cohorts to named researchers (aggregates need their own
    ``research_aggregate`` agreement of at most four fields)."""
    RESEARCH_AGGREGATE = "research_aggregate"
    """Only aggregate counts, with small-number suppression or rounding, to researchers."""
    DIRECT_CARE = "direct_care"
    """Linked attributes back to the named organisations, for their own patients."""


class AgreementStatus(StrEnum):
    """Where an agreement stands; only ``active`` releases anything."""

    DRAFT = "draft"
    """Not yet approved by every contributing organisation."""
    APPROVED = "approved"
    """Approved by all, before its start date."""
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class AggregateControl(StrEnum):
    """How an aggregate release protects small numbers."""

    SUPPRESS = "suppress"
    """Counts below the minimum cell size are withheld, plus secondary suppression."""
    ROUND = "round"
    """Every count, margin and total is rounded to a multiple of ``rounding_base``."""


class SdcProfile(StrEnum):
    """A published statistical disclosure control rule for aggregates (broker/disclosure.py)."""

    NHSE_HES = "nhse-hes"
    """NHS England HES/ECDS below national level: 1-7 suppressed, others to the nearest 5."""
    OPENSAFELY = "opensafely"
    """OpenSAFELY: counts of 7 or fewer redacted, the rest rounded (``sdc_rounding``)."""
    THRESHOLD = "threshold"
    """Counts below ``sdc_threshold`` suppressed, the rest exact."""


class OpenSafelyRounding(StrEnum):
    """How the ``opensafely`` profile rounds the counts it shows."""

    NEAREST_5 = "nearest-5"
    """To the nearest multiple of 5 (OpenSAFELY's "Rounding counts")."""
    MIDPOINT_6 = "midpoint-6"
    """OpenSAFELY's "midpoint 6": up to a multiple of 6, less 3."""


class ConfidentialityBasis(StrEnum):
    """What sets aside the common-law duty of confidentiality for the sharing."""

    SECTION_251 = "s251"
    """Support under section 251 of the NHS Act 2006 (Confidentiality Advisory Group)."""
    CONSENT = "consent"
    """Each person's explicit consent."""
    DIRECT_CARE = "direct_care"
    """Implied consent for individual care."""
    STATUTORY = "statutory"
    """A statutory gateway or legal requirement (an Act, a court order, a direction)."""
    OVERRIDING_PUBLIC_INTEREST = "public_interest"
    """An overriding public interest, decided case by case."""
    NOT_CONFIDENTIAL = "not_confidential"
    """The released data is not confidential patient information (e.g. anonymised)."""


REQUIRED_GOVERNANCE_FIELDS: tuple[str, ...] = (
    "objective",
    "article_6",
    "article_9",
    "confidentiality_basis",
    "controllers",
    "dpia_reference",
    "individual_rights",
    "quality_checks",
    "retention_until",
    "secure_deletion",
    "review_dates",
)
"""What the ICO data sharing code asks an agreement to record: a new agreement lacking any
of these is refused (broker/agreements.py). They are optional in the model only so that
agreements stored before they existed still load."""


class DatasetRelease(_Wire):
    """One dataset of an agreement and the payload fields released from it."""

    org: Name
    name: Name
    fields: Annotated[list[_Field], Field(max_length=64)] = Field(default_factory=list)

    @property
    def dataset_id(self) -> str:
        """The broker-wide dataset id, ``org/name``."""
        return f"{self.org}/{self.name}"


class AgreementTerms(_Wire):
    """What an agreement says: written by the operator, shown to the public.

    ``opt_outs_apply`` defaults to true for research and false for direct care (the
    National Data Opt-out does not apply to individual care).
    """

    title: Annotated[str, Field(min_length=1, max_length=200)]
    purpose: _Text
    legal_basis: Annotated[str, Field(min_length=1, max_length=500)]
    kind: AgreementKind
    datasets: Annotated[list[DatasetRelease], Field(min_length=1, max_length=32)]
    researchers: Annotated[list[Name], Field(max_length=256)] = Field(default_factory=list)
    organisations: Annotated[list[Name], Field(max_length=256)] = Field(default_factory=list)
    start: date
    end: date
    min_cell_size: Annotated[int, Field(ge=2, le=1000)] = 10
    aggregate_control: AggregateControl = AggregateControl.SUPPRESS
    rounding_base: Annotated[int, Field(ge=2, le=1000)] = 5
    sdc_profile: SdcProfile | None = None
    sdc_threshold: Annotated[int, Field(ge=2, le=1000)] | None = None
    sdc_rounding: OpenSafelyRounding = OpenSafelyRounding.NEAREST_5
    opt_outs_apply: bool | None = None
    opt_out_max_age_days: Annotated[int, Field(ge=1, le=366)] = 21
    """Research releases are refused from a batch whose national opt-out check (its
    ``opt_out_checked``) is older than this (docs/agreements.md says why 21 by default)."""
    objective: _Text | None = None
    """What the sharing is meant to achieve, and for whom (the ICO code's "objective")."""
    article_6: _Short | None = None
    """The UK GDPR Article 6 lawful basis, e.g. ``Art 6(1)(e) public task``."""
    article_9: _Short | None = None
    """The UK GDPR Article 9 condition for health data, e.g. ``Art 9(2)(j) research``."""
    confidentiality_basis: ConfidentialityBasis | None = None
    """What sets aside the common-law duty of confidentiality."""
    controllers: Annotated[list[_Party], Field(max_length=64)] = Field(default_factory=list)
    """The data controllers (joint or separate), by legal name."""
    processors: Annotated[list[_Party], Field(max_length=64)] = Field(default_factory=list)
    """The processors acting for them (the broker's operator is usually one), by name."""
    dpia_reference: _Short | None = None
    """The reference of the data protection impact assessment that covers the sharing."""
    individual_rights: _Text | None = None
    """How people are told and how their rights (access, objection, …) are met."""
    quality_checks: _Text | None = None
    """How the accuracy and quality of the shared data is checked."""
    retention_until: date | None = None
    """The date by which the recipients delete what was released."""
    secure_deletion: _Text | None = None
    """How released data is securely deleted, and how deletion is confirmed."""
    review_dates: Annotated[list[date], Field(max_length=32)] = Field(default_factory=list)
    """When the agreement is reviewed."""
    sublicensing: bool = False
    """Whether recipients may pass the data on (NHS England's register shows this)."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems: list[str] = []
        if self.end < self.start:
            problems.append("end is before start")
        ids = [d.dataset_id for d in self.datasets]
        if len(set(ids)) != len(ids):
            problems.append("a dataset is listed twice")
        for d in self.datasets:
            if len(set(d.fields)) != len(d.fields):
                problems.append(f"{d.dataset_id}: a field is listed twice")
        problems += self._sdc_problems()
        if self.retention_until is not None and self.retention_until < self.end:
            problems.append("retention_until is before the end of the agreement")
        if any(day < self.start for day in self.review_dates):
            problems.append("a review date is before the start of the agreement")
        if self.kind is AgreementKind.DIRECT_CARE:
            if not self.organisations:
                problems.append("a direct-care agreement names the receiving organisations")
            if self.researchers:
                problems.append("a direct-care agreement releases to organisations only")
        else:
            if not self.researchers:
                problems.append("a research agreement names its researchers")
            if self.organisations:
                problems.append("a research agreement releases to researchers only")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _sdc_problems(self) -> list[str]:
        problems: list[str] = []
        profile = self.sdc_profile
        if profile is not None and self.kind is not AgreementKind.RESEARCH_AGGREGATE:
            problems.append("sdc_profile applies to research_aggregate agreements only")
        if profile is not None and self.aggregate_control is AggregateControl.ROUND:
            problems.append("sdc_profile replaces aggregate_control: give one of them")
        if self.sdc_threshold is not None and profile is not SdcProfile.THRESHOLD:
            problems.append('sdc_threshold is a parameter of sdc_profile = "threshold"')
        if (
            self.sdc_rounding is not OpenSafelyRounding.NEAREST_5
            and profile is not SdcProfile.OPENSAFELY
        ):
            problems.append('sdc_rounding is a parameter of sdc_profile = "opensafely"')
        return problems

    @model_validator(mode="before")
    @classmethod
    def _default_opt_outs(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("opt_outs_apply") is None:
            direct = str(data.get("kind", "")) == AgreementKind.DIRECT_CARE.value
            return {**data, "opt_outs_apply": not direct}
        return data

    @property
    def contributors(self) -> list[str]:
        """Organisations whose datasets the agreement uses: each must approve it."""
        return sorted({d.org for d in self.datasets})

    def missing_governance(self) -> list[str]:
        """The required governance fields (:data:`REQUIRED_GOVERNANCE_FIELDS`) not given."""
        return [name for name in REQUIRED_GOVERNANCE_FIELDS if not getattr(self, name)]

    def released_labels(self) -> list[str]:
        """Every released field's column label, in agreement order."""
        return [field_label(d.org, d.name, f) for d in self.datasets for f in d.fields]


class AgreementOut(_Wire):
    """An agreement as the broker holds it, with its status at the time of asking."""

    id: str
    terms: AgreementTerms
    status: AgreementStatus
    contributors: list[str]
    approvals: dict[str, str]
    """Contributing organisation -> when it approved."""
    created_at: str
    revoked_at: str | None = None


PredicateOp = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "present", "absent"]


class Predicate(_Wire):
    """A condition on one released field (numbers compare as numbers).

    A person with several values (several records in one dataset) matches when any
    value does; ``absent`` matches a person with no value.
    """

    field: _Label
    op: PredicateOp
    value: str | float | list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.op in ("present", "absent"):
            if self.value is not None:
                raise ValueError(f"{self.op} takes no value")
        elif self.op == "in":
            if not isinstance(self.value, list):
                raise ValueError("in takes a list of values")
        elif self.value is None or isinstance(self.value, list):
            raise ValueError(f"{self.op} takes one value")
        return self


class CohortRequest(_Wire):
    """A researcher's cohort selection under one agreement.

    Attributes:
        require: dataset ids (``org/name``) a person must have a record in (default: every
            dataset of the agreement).
        where: conditions on released fields, all of which must hold.
        select: released field labels to return (default: every released field).
    """

    require: Annotated[list[_Label], Field(max_length=32)] | None = None
    where: Annotated[list[Predicate], Field(max_length=32)] = Field(default_factory=list)
    select: Annotated[list[_Label], Field(max_length=256)] | None = None


class CohortOut(_Wire):
    """A pseudonymised cohort: one row per person, first column the project pseudonym."""

    agreement: str
    columns: list[str]
    rows: list[list[str | None]]


class AggregateRequest(_Wire):
    """Counts of the agreement's population by one to four released fields."""

    by: Annotated[list[_Label], Field(min_length=1, max_length=4)]


class AggregateCell(_Wire):
    """One count: ``values`` per ``by`` field, ``None`` for the margin over that field.

    An absent value (a person with no record in that dataset) is the empty string.
    ``count`` is ``None`` when suppressed.
    """

    values: list[str | None]
    count: int | None
    suppressed: bool = False


class AggregateOut(_Wire):
    """An aggregate table with every margin and the total (all values ``None``)."""

    agreement: str
    by: list[str]
    control: AggregateControl
    min_cell_size: int
    rounding_base: int | None = None
    sdc_profile: SdcProfile | None = None
    sdc_rule: str = ""
    cells: list[AggregateCell]


class LinkedRow(_Wire):
    """One of the requesting organisation's own records and what is released about it."""

    dataset: Name
    ref: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    """The organisation's own reference (hex): its local index maps it to a local id."""
    values: list[str | None]


class LinkedOut(_Wire):
    """A direct-care release: ``values`` of each row follow ``columns``."""

    agreement: str
    columns: list[str]
    rows: list[LinkedRow]
