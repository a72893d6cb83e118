"""The generator's parameters and the summary of a run: error rates per source, the
population and trap parameters (docs/synthetic-data.md gives every rate's source).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Final, Literal

from client_sdk.errors import InputError

__all__ = [
    "HOSPITAL_ERRORS",
    "MAX_PRACTICES",
    "OPTOUT_ERRORS",
    "DatasetKind",
    "DatasetSummary",
    "ErrorRates",
    "SynthParams",
    "SynthSummary",
]

DatasetKind = Literal["gp", "hospital", "optout"]
MAX_PRACTICES: Final = 1000  # practice codes are L85000 to L85999
# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorRates:
    """Per-record error rates of one kind of source (each a probability in [0, 1]).

    Defaults are a GP registration system's (clean: the NHS number comes from the Spine);
    ``HOSPITAL_ERRORS`` holds a hospital PAS's. docs/synthetic-data.md gives sources. Rates
    of one field (NHS number: missing, placeholder, mistyped, wrong; date of birth: missing,
    placeholder, typo) are exclusive and drawn in that order; rates of a condition
    (nickname, known_by_middle, dob_swap, diacritics_dropped, middle_in_given) apply only
    where it can occur.

    Attributes:
        nhs_missing: NHS number left blank.
        nhs_placeholder: NHS number written as ``0000000000``.
        nhs_mistyped: one keying error: adjacent transposition, one wrong digit, or (one in
            ten) two wrong digits; the modulus-11 check catches all but about 1 in 11 of the
            last kind.
        nhs_wrong_valid: a valid number of someone else (a family member's when there is
            one, e.g. the mother's on a baby's record, else a stranger's).
        name_typo: a keying or spelled-as-heard error, per name part (given, family).
        nickname: a familiar form (Bill for William) when the given name has one.
        name_swap: given and family name entered the wrong way round.
        dob_swap: of dates that can be swapped (day 12 or less and not equal to the month,
            about 37% of dates), the share written with day and month swapped.
        dob_typo: one digit of the day, month or year wrong, or the year's last two digits
            transposed; for people born 100 or more years ago, half the time a two-digit
            year read in the wrong century.
        dob_placeholder: date of birth recorded as 1900-01-01.
        dob_missing: date of birth left blank.
        postcode_missing: postcode left blank.
        postcode_typo: one character of the inward code wrong or two transposed.
        sex_unknown: sex recorded as unknown.
        sex_wrong: the other sex recorded.
        unknown_patient: an unidentified patient (``UNKNOWN, Male``), no NHS number or date of
            birth, placeholder postcode.
        diacritics_dropped: a name with diacritics typed without them (José → Jose).
        middle_in_given: the middle names typed into the given-name field.
        known_by_middle: a person known by their middle name recorded under it alone.
    """

    nhs_missing: float = 0.003
    nhs_placeholder: float = 0.0
    nhs_mistyped: float = 0.001
    nhs_wrong_valid: float = 0.0002
    name_typo: float = 0.008
    nickname: float = 0.005
    name_swap: float = 0.0005
    dob_swap: float = 0.002
    dob_typo: float = 0.001
    dob_placeholder: float = 0.0
    dob_missing: float = 0.0
    postcode_missing: float = 0.002
    postcode_typo: float = 0.001
    sex_unknown: float = 0.0005
    sex_wrong: float = 0.0005
    unknown_patient: float = 0.0
    diacritics_dropped: float = 0.3
    middle_in_given: float = 0.005
    known_by_middle: float = 0.0


HOSPITAL_ERRORS: Final = ErrorRates(
    nhs_missing=0.06,
    nhs_placeholder=0.01,
    nhs_mistyped=0.005,
    nhs_wrong_valid=0.001,
    name_typo=0.03,
    nickname=0.06,
    name_swap=0.003,
    dob_swap=0.01,
    dob_typo=0.004,
    dob_placeholder=0.001,
    dob_missing=0.001,
    postcode_missing=0.01,
    postcode_typo=0.004,
    sex_unknown=0.003,
    sex_wrong=0.001,
    unknown_patient=0.0005,
    diacritics_dropped=0.3,
    middle_in_given=0.0,
    known_by_middle=0.02,
)

OPTOUT_ERRORS: Final = ErrorRates(
    nhs_missing=0.0,
    nhs_mistyped=0.0,
    nhs_wrong_valid=0.0,
    name_typo=0.002,
    nickname=0.0,
    name_swap=0.0,
    dob_swap=0.0,
    dob_typo=0.0,
    postcode_missing=0.0,
    postcode_typo=0.0,
    sex_unknown=0.0,
    sex_wrong=0.0,
    diacritics_dropped=0.5,
    middle_in_given=0.0,
)


def _hospital_errors() -> ErrorRates:
    return HOSPITAL_ERRORS


def _optout_errors() -> ErrorRates:
    return OPTOUT_ERRORS


@dataclass(frozen=True, slots=True)
class SynthParams:
    """Population, trap and error parameters; defaults mirror published rates.

    Attributes:
        as_of: the extract date: ages and the 12-month payload are counted back from it.
        outsider_share: share of hospital patients registered with none of the practices
            (they live outside the catchment or are visitors).
        opt_out_rate: share of persons on the national opt-out register.
        hospital_base_rate: chance that a young adult with no long-term condition has a
            hospital record; it rises with age and long-term conditions.
        twin_rate: chance that a birth in a family is a twin birth.
        namesake_rate: chance that a new single adult shares given name, family name, sex
            and date of birth with an earlier person living elsewhere.
        junior_rate: chance that a son is given his father's given name.
        mover_rate: share of households whose GP and hospital addresses differ.
        mover_gp_stale: of movers, the share whose practice, not the hospital, has the old
            address.
        married_name_stale_rate: of women whose surname changed at marriage, the share
            whose hospital record still carries the previous surname (or, a quarter of the
            time, whose practice record does).
        ghost_rate: share of households that moved practice and are still on the old
            practice's list too (list inflation), with their old address.
        hyphen_partial_rate: of hyphenated surnames, the share a hospital records as one
            part only.
        hospital_title_rate: share of hospital names written with a title
            (``SMITH, Mrs Mary``).
        hospital_initial_rate: share of hospital names with the given name as an initial
            (``SMITH, J``).
        question_mark_rate: of names the hospital's cp1252 system cannot carry, the share
            exported with ``?`` for each such letter rather than a best-fit letter.
        gp: error rates at the practices.
        hospital: error rates at the hospital.
        optout: error rates on the opt-out register.
    """

    as_of: date = date(2026, 3, 31)
    outsider_share: float = 0.25
    opt_out_rate: float = 0.03
    hospital_base_rate: float = 0.2
    twin_rate: float = 0.015
    namesake_rate: float = 0.004
    junior_rate: float = 0.04
    mover_rate: float = 0.10
    mover_gp_stale: float = 0.25
    married_name_stale_rate: float = 0.10
    ghost_rate: float = 0.01
    hyphen_partial_rate: float = 0.2
    question_mark_rate: float = 0.1
    hospital_title_rate: float = 0.03
    hospital_initial_rate: float = 0.005
    gp: ErrorRates = field(default_factory=ErrorRates)
    hospital: ErrorRates = field(default_factory=_hospital_errors)
    optout: ErrorRates = field(default_factory=_optout_errors)

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be within [0, 1]"
            for name, value in _rates(self)
            if not 0.0 <= value <= 1.0
        ]
        if self.outsider_share >= 1.0:
            problems.append("outsider_share must be below 1")
        if problems:
            raise InputError("synthetic data parameters: " + "; ".join(problems))


def _rates(params: SynthParams) -> Iterable[tuple[str, float]]:
    for name, value in asdict(params).items():
        if isinstance(value, dict):
            for sub, rate in value.items():
                yield f"{name}.{sub}", float(rate)
        elif isinstance(value, float):
            yield name, value


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatasetSummary:
    """One written extract.

    Attributes:
        name: the dataset name used in truth.csv (``gp_L85012``, ``hospital``, ``optout``).
        kind: ``"gp"``, ``"hospital"`` or ``"optout"``.
        path: the CSV file.
        mapping: its mapping TOML.
        encoding: the file's text encoding.
        rows: data rows written.
        one_record_per_person: every dataset holds at most one row per person.
    """

    name: str
    kind: DatasetKind
    path: Path
    mapping: Path
    encoding: str
    rows: int
    one_record_per_person: bool = True


@dataclass(frozen=True, slots=True)
class SynthSummary:
    """What :func:`generate` wrote.

    Attributes:
        out_dir: the output directory.
        seed: the seed.
        persons: distinct persons in the population.
        datasets: the extracts, practices first.
        truth: ``truth.csv`` (dataset, local_id, person_id) covering every row.
        truth_errors: ``truth_errors.csv`` (dataset, local_id, error): every injected error.
        truth_persons: ``truth_persons.csv`` (person_id, household_id, kind, traps).
        injected: per dataset kind, the number of rows carrying each error, and ``rows``.
    """

    out_dir: Path
    seed: int
    persons: int
    datasets: tuple[DatasetSummary, ...]
    truth: Path
    truth_errors: Path
    truth_persons: Path
    injected: Mapping[str, Mapping[str, int]]
