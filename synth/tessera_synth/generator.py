"""Synthetic Somerset data: GP practices, an acute hospital and an opt-out register.

:func:`generate` writes, for one synthetic population, the extracts that real
organisations would hand to the SDK, each in its own convention, with the errors and
traps of real data, and the ground truth that says which rows are the same person.
docs/synthetic-data.md describes every file, every rate and every trap.

The generator is pure and deterministic: one ``random.Random(seed)`` drives everything
(never the global ``random``), the extract date is a parameter, and rows are streamed to
their files through a small shuffle buffer so that memory stays flat and the row order of
one file says nothing about another's.

Nothing here is real: names come from lists written for the project
(``tessera_synth/data/synth_*.txt``) and NHS numbers, postcodes and addresses are drawn in the
valid shape but at random.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import random
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import IO, Any, Final, Literal, TypeVar

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
    "generate",
]

DatasetKind = Literal["gp", "hospital", "optout"]
MAX_PRACTICES: Final = 1000  # practice codes are L85000 to L85999
_T = TypeVar("_T")

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


# ---------------------------------------------------------------------------------------
# Name and place lists
# ---------------------------------------------------------------------------------------


class _Weighted:
    """A weighted choice by bisection over cumulative weights (fast, deterministic)."""

    __slots__ = ("cum", "items", "total")

    def __init__(self, items: Sequence[str], weights: Sequence[float]) -> None:
        if not items:
            raise ValueError("empty list")
        self.items = list(items)
        self.cum: list[float] = []
        running = 0.0
        for weight in weights:
            running += weight
            self.cum.append(running)
        self.total = running

    def pick(self, rng: random.Random) -> str:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.total)]


def _zipf(items: Sequence[str], offset: float) -> _Weighted:
    return _Weighted(items, [1.0 / (rank + offset) ** 0.9 for rank in range(1, len(items) + 1)])


def _sections(name: str) -> dict[str, list[str]]:
    text = resources.files("tessera_synth").joinpath("data", name).read_text(encoding="utf-8")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif current is not None:
            current.append(line)
    return sections


def _lines(name: str) -> list[str]:
    text = resources.files("tessera_synth").joinpath("data", name).read_text(encoding="utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


_ERAS: Final = ("old", "mid", "young")
# Origins of households: names, given and family, are drawn within one origin.
_ORIGINS: Final = {
    "british": 0.92,
    "polish": 0.025,
    "south_asian_muslim": 0.015,
    "south_asian_hindu": 0.01,
    "south_asian_sikh": 0.005,
    "german": 0.007,
    "nordic": 0.004,
    "iberian": 0.006,
    "french": 0.003,
    "turkish": 0.003,
    "central_european": 0.002,
}
_GROUPS: Final = tuple(_ORIGINS)


@dataclass(frozen=True, slots=True)
class _Place:
    district: str
    town: str
    local: bool


class _Lists:
    """Every list the generator draws from, loaded once per run."""

    def __init__(self) -> None:
        self.given: dict[tuple[str, str, str], _Weighted] = {}
        self.by_initial: dict[tuple[str, str, str, str], list[str]] = {}
        for sex, file in (("F", "synth_given_female.txt"), ("M", "synth_given_male.txt")):
            for key, names in _sections(file).items():
                group, era = key.split()
                eras = _ERAS if era == "any" else (era,)
                for e in eras:
                    self.given[(sex, group, e)] = _zipf(names, 1.0)
                    for name in names:
                        self.by_initial.setdefault((sex, group, e, name[0]), []).append(name)
        surnames = _sections("synth_surnames.txt")
        self.surnames = {g: _zipf(surnames[g], 5.0 if g == "british" else 2.0) for g in _GROUPS}
        self.tail_roots = surnames["tail_roots"]
        self.tail_suffixes = surnames["tail_suffixes"]
        self.nicknames: dict[str, list[str]] = {}
        for line in _lines("synth_nicknames.txt"):
            formal, _, familiar = line.partition(":")
            self.nicknames[formal.strip()] = [f.strip() for f in familiar.split(",")]
        self.twin_names: dict[str, list[tuple[str, str]]] = {"F": [], "M": []}
        for line in _lines("synth_twin_names.txt"):
            sex, _, pair = line.partition(":")
            first, second = (name.strip() for name in pair.split(","))
            self.twin_names[sex.strip()].append((first, second))
        self.streets = _lines("synth_streets.txt")
        self.places = []
        for line in _lines("synth_places.txt"):
            district, town, kind = line.split("\t")
            self.places.append(_Place(district, town, kind == "local"))


# ---------------------------------------------------------------------------------------
# Text helpers: case, transliteration, typos
# ---------------------------------------------------------------------------------------

# Letters that NFKD does not decompose, folded to ASCII as a keyboard user types them.
_FOLD: Final = str.maketrans(
    {pair[0]: pair[1:] for pair in "ŁL łl ØO øo ÆAE æae ŒOE œoe ßss ÞTh þth ÐD ðd ĐD đd ıi".split()}
)
# What a Windows "best fit" conversion to cp1252 does with letters cp1252 lacks.
_BEST_FIT: Final = {"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "ı": "i", "İ": "I"}


# How German and Scandinavian users type their letters on an English keyboard.
_EXPAND: Final = str.maketrans(
    {pair[0]: pair[1:] for pair in "äae öoe üue ÄAe ÖOe ÜUe øoe ØOe åaa ÅAa æae ÆAe".split()}
)


def _ascii_fold(text: str, *, expand: bool = False) -> str:
    if expand:
        text = text.translate(_EXPAND)
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _upper(text: str) -> str:
    """Upper case as a PAS stores it: ß stays ß (Python would write SS)."""
    return text.replace("ß", "\x00").upper().replace("\x00", "ß")


def _cp1252(text: str, *, question_marks: bool) -> tuple[str, bool]:
    """``text`` as a cp1252 export writes it; also whether anything was lost."""
    try:
        text.encode("cp1252")
        return text, False
    except UnicodeEncodeError:
        pass
    out = []
    for ch in text:
        try:
            ch.encode("cp1252")
            out.append(ch)
        except UnicodeEncodeError:
            if question_marks:
                out.append("?")
            elif ch in _BEST_FIT:
                out.append(_BEST_FIT[ch])
            else:
                base = unicodedata.normalize("NFKD", ch)[0]
                out.append(base if base.isascii() else "?")
    return "".join(out), True


# QWERTY neighbours of each letter (a slip of the finger).
_KEYBOARD: Final = dict(
    pair.split(":")
    for pair in (
        "q:wa w:qes e:wrd r:etf t:ryg y:tuh u:yij i:uok o:ipl p:ol a:qsz s:adwx d:sfe "
        "f:dgr g:fht h:gjy j:hku k:jli l:ko z:xa x:zcs c:xvd v:cbf b:vng n:bmh m:nj"
    ).split()
)
# Spelled-as-heard variants: (from, to), tried in a random order, first that applies wins.
_PHONETIC: Final = tuple(
    tuple(rule.split(">"))
    for rule in (
        "ph>f f>ph ck>k ie>y y>ie ey>y ll>l nn>n tt>t l>ll s>z z>s ou>ow ae>a th>t "
        "ai>ay ee>ea ea>ee c>k k>c ine>een son>sen sen>son mm>m"
    ).split()
)


def _recase(new: str, like: str) -> str:
    if like.isupper():
        return _upper(new)
    return new


def _typo(name: str, rng: random.Random) -> str:
    """One keying or spelled-as-heard error; the first letter is kept 9 times in 10."""
    letters = [i for i, ch in enumerate(name) if ch.isalpha()]
    if len(letters) < 3:
        return name
    lower = name.lower()
    roll = rng.random()
    if roll < 0.15:
        rules = list(_PHONETIC)
        rng.shuffle(rules)
        for old, new in rules:
            at = lower.find(old, 1)
            if at > 0:
                return name[:at] + _recase(new, name[at : at + len(old)]) + name[at + len(old) :]
    start = 0 if rng.random() < 0.1 else 1
    pool = [i for i in letters if i >= start] or letters
    i = _pick(rng, pool)
    ch = name[i]
    roll = rng.random()
    if roll < 0.35:
        near = _KEYBOARD.get(ch.lower(), "e")
        sub = _pick(rng, near)
        return name[:i] + (sub.upper() if ch.isupper() else sub) + name[i + 1 :]
    if roll < 0.6:
        return name[:i] + name[i + 1 :]
    if roll < 0.75:
        extra = ch if rng.random() < 0.5 else _pick(rng, _KEYBOARD.get(ch.lower(), "e"))
        return name[: i + 1] + (extra.upper() if ch.isupper() else extra.lower()) + name[i + 1 :]
    j = i + 1 if i + 1 < len(name) and name[i + 1].isalpha() else i - 1
    if j < 0 or not name[j].isalpha() or name[i] == name[j]:
        return name[:i] + name[i + 1 :]
    a, b = min(i, j), max(i, j)
    first, second = _like(name[b], name[a]), _like(name[a], name[b])
    return name[:a] + first + second + name[b + 1 :]


def _like(ch: str, model: str) -> str:
    """``ch`` in the case of ``model`` (a typo keeps the case of the position)."""
    return ch.upper() if model.isupper() else ch.lower()


# ---------------------------------------------------------------------------------------
# NHS numbers, postcodes, dates
# ---------------------------------------------------------------------------------------

_NHS_WEIGHTS: Final = (10, 9, 8, 7, 6, 5, 4, 3, 2)


def _nhs_check(nine: str) -> int:
    total = 0
    for d, w in zip(nine, _NHS_WEIGHTS, strict=True):
        total += (ord(d) - 48) * w
    check = 11 - total % 11
    return 0 if check == 11 else check


def _nhs_valid(number: str) -> bool:
    if len(number) != 10 or not number.isdigit():
        return False
    check = _nhs_check(number[:9])
    return check != 10 and check == int(number[9])


class _NhsBook:
    """Unique valid NHS numbers in the 900-999 million block.

    Numbers issued to patients in England and Wales start with 4, 6 or 7; the 9 block is
    where the NHS's own examples (943 476 5919) and its reserved test range (999…) live,
    so that a synthetic number does not name a real patient's record.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def new(self) -> str:
        rng = self.rng
        while True:
            nine = f"{900 + int(rng.random() * 100)}{int(rng.random() * 1_000_000):06d}"
            check = _nhs_check(nine)
            if check == 10:
                continue
            number = nine + str(check)
            if number in self.used or len(set(nine)) == 1 or number == "9876543210":
                continue
            self.used.add(number)
            return number


def _mistype_nhs(number: str, rng: random.Random) -> str:
    digits = list(number)
    roll = rng.random()
    if roll < 0.45:
        for _ in range(20):
            i = _below(rng, 9)
            if digits[i] != digits[i + 1]:
                digits[i], digits[i + 1] = digits[i + 1], digits[i]
                return "".join(digits)
    count = 2 if roll > 0.9 else 1
    for i in rng.sample(range(10), count):
        digits[i] = _pick(rng, [d for d in "0123456789" if d != digits[i]])
    return "".join(digits)


_INWARD_LETTERS: Final = "ABDEFGHJLNPQRSTUWXYZ"
_POSTCODE_DRAWS: Final = 64  # misses before a full district widens or reuses a postcode


@dataclass(frozen=True, slots=True)
class _Address:
    line1: str
    town: str
    postcode: str


class _PostcodeBook:
    """Postcode units per town, each holding a street of 6 to 30 addresses."""

    def __init__(self, rng: random.Random, lists: _Lists) -> None:
        self.rng = rng
        self.lists = lists
        self.used: set[str] = set()
        self.towns: dict[str, list[_Place]] = {}
        for place in lists.places:
            self.towns.setdefault(place.town, []).append(place)
        self.local_towns = sorted({p.town for p in lists.places if p.local})
        self.outside_places = [p for p in lists.places if not p.local]
        # Per town: open units [postcode, street, next house number, capacity].
        self.open: dict[str, list[list[Any]]] = {}
        self.sectors: dict[str, list[int]] = {}
        self.units: dict[str, list[str]] = {}  # per district, the postcodes handed out

    def _new_unit(self, place: _Place) -> list[Any]:
        postcode = self._new_postcode(place.district)
        street = _pick(self.rng, self.lists.streets)
        return [postcode, street, _between(self.rng, 1, 3), _between(self.rng, 6, 30), place.town]

    def _new_postcode(self, district: str) -> str:
        """An unused postcode of ``district``; the district widens, then reuses, when full.

        Draws are random, so a district whose sectors fill up takes ever more draws: after
        :data:`_POSTCODE_DRAWS` misses a sector is added (up to all ten), and once every
        one of the district's 4,000 units is taken a new street shares a used unit, as
        real streets do. So any population size finishes.
        """
        rng = self.rng
        sectors = self.sectors.get(district)
        if sectors is None:
            sectors = sorted(rng.sample(range(10), _between(rng, 2, 6)))
            self.sectors[district] = sectors
        units = self.units.setdefault(district, [])
        while True:
            for _ in range(_POSTCODE_DRAWS):
                inward = (
                    f"{_pick(rng, sectors)}{_pick(rng, _INWARD_LETTERS)}"
                    f"{_pick(rng, _INWARD_LETTERS)}"
                )
                postcode = f"{district} {inward}"
                if postcode not in self.used:
                    self.used.add(postcode)
                    units.append(postcode)
                    return postcode
            unused = [d for d in range(10) if d not in sectors]
            if not unused:
                return _pick(rng, units)
            sectors.append(_pick(rng, unused))
            sectors.sort()

    def address(self, town: str) -> _Address:
        rng = self.rng
        units = self.open.setdefault(town, [])
        if len(units) < 4 or rng.random() < 0.05:
            units.append(self._new_unit(_pick(rng, self.towns[town])))
        unit = _pick(rng, units)
        number = unit[2]
        unit[2] += _pick(rng, (1, 1, 2, 2, 2, 3))
        unit[3] -= 1
        if unit[3] <= 0:
            units.remove(unit)
        roll = rng.random()
        if roll < 0.08:
            line1 = f"Flat {_between(rng, 1, 12)}, {number} {unit[1]}"
        elif roll < 0.11:
            line1 = f"{_pick(rng, _HOUSE_NAMES)}, {unit[1]}"
        else:
            line1 = f"{number} {unit[1]}"
        return _Address(line1, unit[4], unit[0])

    def outside(self) -> _Address:
        rng = self.rng
        place = _pick(rng, self.outside_places)
        unit = self._new_unit(place)
        return _Address(f"{_between(rng, 1, 200)} {unit[1]}", place.town, unit[0])


_HOUSE_NAMES: Final = (
    "Rose Cottage",
    "The Old Rectory",
    "Orchard House",
    "Ivy Cottage",
    "The Willows",
    "Meadow View",
    "Church Farm",
    "The Old School",
    "Hillside",
    "Primrose Cottage",
)


def _mistype_postcode(postcode: str, rng: random.Random) -> str:
    outward, inward = postcode.split(" ")
    if rng.random() < 0.3 and inward[1] != inward[2]:
        return f"{outward} {inward[0]}{inward[2]}{inward[1]}"
    i = _below(rng, 3)
    if i == 0:
        new = _pick(rng, [d for d in "0123456789" if d != inward[0]])
    else:
        new = _pick(rng, [c for c in _INWARD_LETTERS if c != inward[i]])
    return f"{outward} {inward[:i]}{new}{inward[i + 1 :]}"


def _swap_day_month(dob: date) -> date | None:
    if dob.day > 12 or dob.day == dob.month:
        return None
    return date(dob.year, dob.day, dob.month)


def _dob_typo(dob: date, rng: random.Random, as_of: date) -> date:
    # A two-digit year read in the wrong century (25 → 2025 for someone born in 1925).
    leap_day = (dob.month, dob.day) == (2, 29)
    if dob.year + 100 <= as_of.year and not leap_day and rng.random() < 0.5:
        return dob.replace(year=dob.year + 100)
    for _ in range(20):
        roll = rng.random()
        try:
            if roll < 0.35:
                yy = dob.year % 100
                swapped = (yy % 10) * 10 + yy // 10
                if swapped == yy:
                    continue
                year = dob.year - yy + swapped
                if year > as_of.year:
                    continue
                return dob.replace(year=year)
            if roll < 0.5:
                return dob.replace(year=dob.year + _pick(rng, (-1, 1)))
            if roll < 0.8:
                tens, units = divmod(dob.day, 10)
                if rng.random() < 0.7:
                    units = _pick(rng, [u for u in range(10) if u != units])
                else:
                    tens = _pick(rng, [t for t in range(4) if t != tens])
                return dob.replace(day=tens * 10 + units)
            return dob.replace(month=_pick(rng, [m for m in range(1, 13) if m != dob.month]))
        except ValueError:
            continue
    return dob + timedelta(days=1)


def _between(rng: random.Random, low: int, high: int) -> int:
    """``rng.randint`` without its argument checks: this is the hot path."""
    return low + int(rng.random() * (high - low + 1))


def _below(rng: random.Random, high: int) -> int:
    """``rng.randrange(high)``, likewise."""
    return int(rng.random() * high)


def _pick(rng: random.Random, items: Sequence[_T]) -> _T:
    """``rng.choice`` without its bounds arithmetic: this is the hot path."""
    return items[int(rng.random() * len(items))]


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    k = 0
    p = rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


# ---------------------------------------------------------------------------------------
# The population
# ---------------------------------------------------------------------------------------

# Age pyramid of a Somerset-like population (share per 5-year band, 0-4 … 90-99).
_PYRAMID: Final = (
    4.8, 5.4, 5.7, 5.3, 4.6, 5.2, 5.6, 5.7, 5.6, 5.9,
    7.1, 7.4, 6.9, 6.3, 6.6, 5.0, 3.4, 2.0, 1.1,
)  # fmt: skip


@dataclass(slots=True)
class _Person:
    pid: str
    household: str
    sex: str
    group: str
    given: str
    middles: list[str]
    family: str
    previous_family: str | None
    dob: date
    nhs: str
    ltc: int = 0
    efi: float | None = None
    risk: float = 1.0
    traps: list[str] = field(default_factory=list)
    name_stale: str | None = None


@dataclass(slots=True)
class _Household:
    hid: str
    members: list[_Person]
    address: _Address
    previous: _Address | None
    stale: str | None
    practice: int | None
    ghost_practice: int | None


@dataclass(frozen=True, slots=True)
class _Practice:
    code: str
    towns: tuple[str, ...]
    dob_format: str
    upper: bool


def _feminise(surname: str) -> str:
    for male, female in (("ski", "ska"), ("cki", "cka"), ("dzki", "dzka")):
        if surname.endswith(male):
            return surname[: -len(male)] + female
    return surname


def _age_band(age: int) -> str:
    for upper, band in ((17, "0-17"), (44, "18-44"), (64, "45-64"), (74, "65-74"), (84, "75-84")):
        if age <= upper:
            return band
    return "85+"


def _age_on(dob: date, as_of: date) -> int:
    return as_of.year - dob.year - ((as_of.month, as_of.day) < (dob.month, dob.day))


class _Population:
    """Draws households and persons; knows nothing about files."""

    def __init__(self, rng: random.Random, lists: _Lists, params: SynthParams) -> None:
        self.rng = rng
        self.lists = lists
        self.params = params
        self.nhs = _NhsBook(rng)
        self.postcodes = _PostcodeBook(rng, lists)
        self.person_seq = 0
        self.household_seq = 0
        self.group_pick = _Weighted(_GROUPS, list(_ORIGINS.values()))
        self.namesake_pool: list[_Person] = []
        band_weights = list(_PYRAMID)
        self.adult_bands = _Weighted([str(i) for i in range(4, len(_PYRAMID))], band_weights[4:])
        self.any_bands = _Weighted([str(i) for i in range(len(_PYRAMID))], band_weights)

    # -- names --------------------------------------------------------------------------

    def _era(self, dob: date) -> str:
        if dob.year < 1960:
            return "old"
        return "mid" if dob.year < 1990 else "young"

    def given_name(self, sex: str, group: str, dob: date, *, avoid: Sequence[str] = ()) -> str:
        table = self.lists.given[(sex, group, self._era(dob))]
        for _ in range(50):
            name = table.pick(self.rng)
            if name not in avoid:
                return name
        return name

    def similar_given(self, sex: str, group: str, dob: date, like: str) -> str:
        key = (sex, group, self._era(dob), like[0])
        choices = [n for n in self.lists.by_initial.get(key, []) if n != like]
        if not choices:
            return self.given_name(sex, group, dob, avoid=(like,))
        return _pick(self.rng, choices)

    def middles(self, sex: str, group: str, dob: date, given: str) -> list[str]:
        rng = self.rng
        share = 0.7 if group == "british" else 0.3
        if rng.random() >= share:
            return []
        count = 2 if rng.random() < 0.1 else 1
        return [self.given_name(sex, group, dob, avoid=(given,)) for _ in range(count)]

    def surname(self, group: str) -> str:
        rng = self.rng
        if group == "british":
            roll = rng.random()
            if roll < 0.5:
                return _pick(rng, self.lists.tail_roots) + _pick(rng, self.lists.tail_suffixes)
            if roll < 0.51:
                a = self.lists.surnames["british"].pick(rng)
                b = self.lists.surnames["british"].pick(rng)
                if a != b and "-" not in a + b and " " not in a + b:
                    return f"{a}-{b}"
        return self.lists.surnames[group].pick(rng)

    # -- persons ------------------------------------------------------------------------

    def _dob_for_age(self, age: int) -> date:
        as_of = self.params.as_of
        return as_of - timedelta(days=int(age * 365.25) + _below(self.rng, 365))

    def age_from(self, bands: _Weighted, low: int = 0, high: int = 99) -> int:
        for _ in range(100):
            band = int(bands.pick(self.rng))
            age = band * 5 + _below(self.rng, 5 if band < 18 else 10)
            if low <= age <= high:
                return age
        return max(low, min(high, 40))

    def person(
        self,
        household: str,
        sex: str,
        group: str,
        age: int,
        family: str,
        *,
        previous_family: str | None = None,
        dob: date | None = None,
        given: str | None = None,
    ) -> _Person:
        self.person_seq += 1
        birth = dob or self._dob_for_age(age)
        first = given or self.given_name(sex, group, birth)
        if sex == "F":
            family = _feminise(family)
            if previous_family is not None:
                previous_family = _feminise(previous_family)
            # Sikh women are often Kaur where the men are Singh; Bangladeshi wives Begum.
            if family == "Singh" and self.rng.random() < 0.7:
                family = "Kaur"
            elif group == "south_asian_muslim" and age >= 18 and self.rng.random() < 0.15:
                family = "Begum"
        p = _Person(
            pid=f"P{self.person_seq:07d}",
            household=household,
            sex=sex,
            group=group,
            given=first,
            middles=self.middles(sex, group, birth, first),
            family=family,
            previous_family=previous_family,
            dob=birth,
            nhs=self.nhs.new(),
        )
        self._health(p)
        return p

    def _health(self, p: _Person) -> None:
        rng = self.rng
        age = _age_on(p.dob, self.params.as_of)
        p.ltc = min(12, _poisson(rng, 0.08 + 3.6 * (age / 85.0) ** 3))
        if age >= 65:
            deficits = p.ltc + _poisson(rng, 0.5 + 0.12 * (age - 60))
            p.efi = min(deficits, 36) / 36.0
        p.risk = rng.gammavariate(1.3, 1 / 1.3)

    # -- households ---------------------------------------------------------------------

    def household(self, *, remaining: int) -> _Household:
        """A local household: its members, address, practice set by the caller."""
        rng = self.rng
        self.household_seq += 1
        hid = f"H{self.household_seq:07d}"
        group = self.group_pick.pick(rng)
        members: list[_Person] = []
        roll = rng.random()
        if roll < 0.34 or remaining == 1:
            members.append(self._single(hid, group))
        elif roll < 0.64:
            members.extend(self._couple(hid, group, with_children=False))
        elif roll < 0.88:
            members.extend(self._couple(hid, group, with_children=True))
        elif roll < 0.95:
            members.extend(self._lone_parent(hid, group))
        else:
            members.extend(self._couple(hid, group, with_children=False, elderly=True))
            parent_age = min(99, _age_on(members[0].dob, self.params.as_of) + _between(rng, 22, 35))
            sex = "F" if rng.random() < 0.75 else "M"
            maiden = self.surname(group) if sex == "F" and rng.random() < 0.85 else None
            elder = self.person(hid, sex, group, parent_age, members[0].family,
                                previous_family=maiden)  # fmt: skip
            if elder.previous_family is not None:
                elder.traps.append("surname_changed")
            members.append(elder)
        if len(members) > remaining:
            members = members[:remaining]
            kept = {p.pid for p in members}
            for p in members:
                p.traps = [t for t in p.traps if not t.startswith("twin_of=") or t[8:] in kept]
        town = _pick(rng, self.postcodes.local_towns)
        address = self.postcodes.address(town)
        previous = None
        stale = None
        if rng.random() < self.params.mover_rate:
            previous = self.previous_address(town)
            stale = "gp" if rng.random() < self.params.mover_gp_stale else "hospital"
        for p in members:
            if "moved" not in p.traps and previous is not None:
                p.traps.append("moved")
        return _Household(hid, members, address, previous, stale, None, None)

    def previous_address(self, town: str) -> _Address:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            return self.postcodes.address(town)
        if roll < 0.9:
            return self.postcodes.address(_pick(rng, self.postcodes.local_towns))
        return self.postcodes.outside()

    def _single(self, hid: str, group: str) -> _Person:
        rng = self.rng
        sex = "F" if rng.random() < 0.55 else "M"
        age = self.age_from(self.adult_bands, 18)
        if age < 60 and rng.random() < 0.4:
            age = self.age_from(self.adult_bands, 60)
        if self.namesake_pool and rng.random() < self.params.namesake_rate:
            twin_of = _pick(rng, self.namesake_pool)
            p = self.person(
                hid,
                twin_of.sex,
                twin_of.group,
                0,
                twin_of.family,
                dob=twin_of.dob,
                given=twin_of.given,
            )
            p.traps.append(f"namesake_of={twin_of.pid}")
            return p
        p = self.person(hid, sex, group, age, self.surname(group))
        self._remember(p)
        return p

    def _remember(self, p: _Person) -> None:
        if p.group != "british" or p.family not in _COMMON_SURNAMES:
            return
        if len(self.namesake_pool) < 2000:
            self.namesake_pool.append(p)
        else:
            self.namesake_pool[_below(self.rng, 2000)] = p

    def _couple(
        self, hid: str, group: str, *, with_children: bool, elderly: bool = False
    ) -> list[_Person]:
        rng = self.rng
        if with_children:
            age = _between(rng, 26, 58)
        elif elderly:
            age = _between(rng, 40, 70)
        else:
            age = self.age_from(self.adult_bands, 20)
            if age < 50 and rng.random() < 0.4:
                age = self.age_from(self.adult_bands, 55)
        partner_group = group if rng.random() < 0.9 else "british"
        his = self.surname(group)
        her_birth = self.surname(partner_group)
        married = rng.random() < 0.7
        children_family = his
        if married:
            roll = rng.random()
            her = his if roll < 0.85 else (her_birth if roll < 0.95 else f"{her_birth}-{his}")
            if "-" in her_birth and her != her_birth:
                her = his
        else:
            her = her_birth
            roll = rng.random()
            if roll > 0.85 and "-" not in his + her_birth:
                children_family = f"{her_birth}-{his}"
            elif roll > 0.7:
                children_family = her_birth
        previous = her_birth if her != her_birth else None
        him = self.person(hid, "M", group, age, his)
        her_age = max(18, min(99, age + round(rng.gauss(-2, 3))))
        wife = self.person(hid, "F", partner_group, her_age, her, previous_family=previous)
        if previous is not None:
            wife.traps.append("surname_changed")
        members = [him, wife]
        if with_children:
            members.extend(self._children(hid, group, min(age, her_age), children_family, him))
        return members

    def _lone_parent(self, hid: str, group: str) -> list[_Person]:
        rng = self.rng
        sex = "F" if rng.random() < 0.88 else "M"
        age = _between(rng, 20, 55)
        family = self.surname(group)
        parent = self.person(hid, sex, group, age, family)
        return [parent, *self._children(hid, group, age, family, parent if sex == "M" else None)]

    def _children(
        self, hid: str, group: str, parent_age: int, family: str, father: _Person | None
    ) -> list[_Person]:
        rng = self.rng
        count = rng.choices((1, 2, 3, 4), weights=(40, 40, 15, 5))[0]
        # The eldest was born when the parent was 18 to 36; the others 1 to 5 years apart.
        # Children over 24 have left home.
        age = parent_age - _between(rng, min(18, parent_age), min(36, parent_age))
        kids: list[_Person] = []
        for _ in range(count):
            if age < 0:
                break
            if age > 24:
                age -= _between(rng, 1, 5)
                continue
            sex = "M" if rng.random() < 0.51 else "F"
            given = None
            if (
                sex == "M"
                and father is not None
                and rng.random() < self.params.junior_rate
                and all(k.given != father.given for k in kids)
            ):
                given = father.given
            avoid = [k.given for k in kids]
            dob = self._dob_for_age(age)
            if given is None:
                given = self.given_name(sex, group, dob, avoid=avoid)
            kid = self.person(hid, sex, group, age, family, dob=dob, given=given)
            if father is not None and given == father.given:
                kid.traps.append(f"junior_of={father.pid}")
            kids.append(kid)
            if rng.random() < self.params.twin_rate:
                twin_sex = sex if rng.random() < 0.65 else ("F" if sex == "M" else "M")
                renamable = group == "british" and not kid.traps
                if twin_sex == sex and rng.random() < 0.3:
                    if renamable and rng.random() < 0.5:
                        pair = _pick(rng, self.lists.twin_names[sex])
                        kid.given, twin_given = pair if rng.random() < 0.5 else pair[::-1]
                    else:
                        twin_given = self.similar_given(sex, group, dob, given)
                else:
                    twin_given = self.given_name(twin_sex, group, dob, avoid=[*avoid, given])
                twin = self.person(hid, twin_sex, group, age, family, dob=dob, given=twin_given)
                twin.traps.append(f"twin_of={kid.pid}")
                kid.traps.append(f"twin_of={twin.pid}")
                kids.append(twin)
            age -= _between(rng, 1, 5)
        return kids

    def outsider(self) -> tuple[_Person, _Address]:
        """A hospital patient from outside the catchment, older than the population."""
        rng = self.rng
        self.household_seq += 1
        hid = f"H{self.household_seq:07d}"
        group = self.group_pick.pick(rng)
        for _ in range(50):
            age = self.age_from(self.any_bands)
            if rng.random() < _hospital_probability(age, 0, self.params.hospital_base_rate):
                break
        sex = "F" if rng.random() < 0.52 else "M"
        p = self.person(hid, sex, group, age, self.surname(group))
        p.traps.append("outsider")
        return p, self.postcodes.outside()


_COMMON_SURNAMES: Final = frozenset(
    "Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson "
    "Thompson Wright Walker White Edwards Hughes Green Hall Lewis Harris Clarke".split()
)


def _hospital_probability(age: int, ltc: int, base: float) -> float:
    if age == 0:
        return 0.9  # born in the hospital
    p = base + 0.006 * max(age - 40, 0) + 0.06 * ltc + (0.15 if age < 5 else 0.0)
    return min(p, 0.95)


# ---------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------


class _ShuffledCsv:
    """A CSV writer that emits rows through a shuffle buffer (row order hides nothing)."""

    def __init__(
        self, path: Path, header: Sequence[str], *, encoding: str, crlf: bool, rng: random.Random
    ) -> None:
        self.handle: IO[str] = path.open("w", encoding=encoding, newline="", errors="strict")
        self.writer = csv.writer(self.handle, lineterminator="\r\n" if crlf else "\n")
        self.writer.writerow(header)
        self.rng = rng
        self.buffer: list[list[str]] = []
        self.rows = 0

    def write(self, row: list[str]) -> None:
        self.rows += 1
        if len(self.buffer) < 4096:
            self.buffer.append(row)
            return
        i = _below(self.rng, len(self.buffer))
        self.writer.writerow(self.buffer[i])
        self.buffer[i] = row

    def close(self) -> None:
        self.rng.shuffle(self.buffer)
        self.writer.writerows(self.buffer)
        self.buffer = []
        self.handle.close()


_GP_HEADER: Final = (
    "PATIENT_ID",
    "NHS_NO",
    "FORENAME",
    "MIDDLE_NAMES",
    "SURNAME",
    "DOB",
    "SEX",
    "POSTCODE",
    "ADDRESS_LINE_1",
    "TOWN",
    "LTC_COUNT",
    "FRAILTY_INDEX",
    "AGE_BAND",
)
_HOSPITAL_HEADER: Final = (
    "HOSP_NO",
    "NHS NUMBER",
    "PATIENT NAME",
    "D.O.B",
    "GENDER",
    "ADDRESS1",
    "POST CODE",
    "REG GP PRACTICE",
    "AE_ATTENDANCES_12M",
    "EMERGENCY_ADMISSIONS_12M",
)
_OPTOUT_HEADER: Final = (
    "record_ref",
    "nhs_number",
    "family_name",
    "given_name",
    "date_of_birth",
    "postcode",
)


def _gp_mapping(code: str, dob_format: str) -> str:
    return f"""# Mapping for gp_{code}.csv: a GP practice's registration extract (UTF-8).
[source]
format = "csv"
encoding = "utf-8"

[record]
id = "PATIENT_ID"

[identifiers]
nhs_number = "NHS_NO"
given_name = "FORENAME"
middle_names = "MIDDLE_NAMES"
family_name = "SURNAME"
date_of_birth = {{ column = "DOB", formats = ["{dob_format}"] }}
sex = "SEX"
postcode = "POSTCODE"
address_line = "ADDRESS_LINE_1"

[payload]
columns = ["LTC_COUNT", "FRAILTY_INDEX", "AGE_BAND"]
"""


_HOSPITAL_MAPPING: Final = """# hospital.csv: an acute trust PAS export (Windows, cp1252).
[source]
format = "csv"
encoding = "cp1252"

[record]
id = "HOSP_NO"

[identifiers]
nhs_number = "NHS NUMBER"
full_name = { column = "PATIENT NAME", layout = "FAMILY, GIVEN" }
date_of_birth = { column = "D.O.B", formats = ["%d/%m/%Y"] }
sex = "GENDER"
postcode = "POST CODE"
address_line = "ADDRESS1"

[payload]
columns = ["AE_ATTENDANCES_12M", "EMERGENCY_ADMISSIONS_12M"]
"""

_OPTOUT_MAPPING: Final = """# optout.csv: the national opt-out holder list (UTF-8 with a BOM).
[source]
format = "csv"
encoding = "utf-8-sig"

[record]
id = "record_ref"

[identifiers]
nhs_number = "nhs_number"
family_name = "family_name"
given_name = "given_name"
date_of_birth = { column = "date_of_birth", formats = ["%Y%m%d"] }
postcode = "postcode"
"""


# ---------------------------------------------------------------------------------------
# Rendering one person as one source records them
# ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Rendered:
    """A person's identifiers as one source holds them (before formatting)."""

    nhs: str | None
    given: str
    middles: list[str]
    family: str
    dob: date | None
    dob_placeholder: bool
    sex: str | None
    postcode: str | None
    line1: str
    tags: list[str]
    unknown: bool = False


class _Emitter:
    """Applies a source's error rates to a person: what that source's row will hold."""

    def __init__(
        self,
        rng: random.Random,
        lists: _Lists,
        params: SynthParams,
        nhs: _NhsBook,
    ) -> None:
        self.rng = rng
        self.lists = lists
        self.params = params
        self.nhs = nhs

    def render(
        self,
        p: _Person,
        address: _Address,
        rates: ErrorRates,
        *,
        kind: DatasetKind,
        family_numbers: Sequence[str],
    ) -> _Rendered:
        rng = self.rng
        tags: list[str] = []
        # NHS number
        nhs: str | None = p.nhs
        roll = rng.random()
        if roll < rates.nhs_missing:
            nhs = None
            tags.append("nhs_missing")
        elif (roll := roll - rates.nhs_missing) < rates.nhs_placeholder:
            nhs = "0000000000"
            tags.append("nhs_placeholder")
        elif (roll := roll - rates.nhs_placeholder) < rates.nhs_mistyped:
            nhs = _mistype_nhs(p.nhs, rng)
            tags.append("nhs_mistyped_valid" if _nhs_valid(nhs) else "nhs_mistyped")
        elif roll - rates.nhs_mistyped < rates.nhs_wrong_valid:
            others = [n for n in family_numbers if n != p.nhs]
            nhs = _pick(rng, others) if others else self.nhs.new()
            tags.append("nhs_wrong_valid")
        # Names
        family = p.family
        if p.name_stale == kind and p.previous_family is not None:
            family = p.previous_family
            tags.append("married_name")
        given = p.given
        nicknames = self.lists.nicknames.get(given)
        if nicknames and rng.random() < rates.nickname:
            given = _pick(rng, nicknames)
            tags.append("nickname")
        middles = list(p.middles)
        if rng.random() < rates.name_typo:
            new = _typo(given, rng)
            if new != given:
                given = new
                tags.append("given_typo")
        if rng.random() < rates.name_typo:
            new = _typo(family, rng)
            if new != family:
                family = new
                tags.append("family_typo")
        if not "".join([given, family, *middles]).isascii():
            tags.append("has_diacritics")
            if rng.random() < rates.diacritics_dropped:
                expand = rng.random() < 0.3
                given = _ascii_fold(given, expand=expand)
                family = _ascii_fold(family, expand=expand)
                middles = [_ascii_fold(m, expand=expand) for m in middles]
                tags.append("diacritics_dropped")
        if middles and rng.random() < rates.known_by_middle:
            given, middles = middles[0], []
            tags.append("known_by_middle")
        if middles and rng.random() < rates.middle_in_given:
            given = " ".join([given, *middles])
            middles = []
            tags.append("middle_in_given")
        if rng.random() < rates.name_swap:
            given, family = family, given
            tags.append("name_swap")
        # Date of birth
        dob: date | None = p.dob
        placeholder = False
        roll = rng.random()
        if roll < rates.dob_missing:
            dob = None
            tags.append("dob_missing")
        elif (roll := roll - rates.dob_missing) < rates.dob_placeholder:
            placeholder = True
            tags.append("dob_placeholder")
        elif roll - rates.dob_placeholder < rates.dob_typo:
            dob = _dob_typo(p.dob, rng, self.params.as_of)
            tags.append("dob_typo")
        else:
            swapped = _swap_day_month(p.dob)
            if swapped is not None and rng.random() < rates.dob_swap:
                dob = swapped
                tags.append("dob_swap")
        # Sex
        sex: str | None = p.sex
        roll = rng.random()
        if roll < rates.sex_unknown:
            sex = None
            tags.append("sex_unknown")
        elif roll - rates.sex_unknown < rates.sex_wrong:
            sex = "F" if p.sex == "M" else "M"
            tags.append("sex_wrong")
        # Postcode
        postcode: str | None = address.postcode
        roll = rng.random()
        if roll < rates.postcode_missing:
            postcode = None
            tags.append("postcode_missing")
        elif roll - rates.postcode_missing < rates.postcode_typo:
            postcode = _mistype_postcode(address.postcode, rng)
            tags.append("postcode_typo")
        rendered = _Rendered(nhs, given, middles, family, dob, placeholder, sex, postcode,
                             address.line1, tags)  # fmt: skip
        if rng.random() < rates.unknown_patient:
            rendered = _Rendered(None, "Unknown", [], "UNKNOWN", None, False, None,
                                 "ZZ99 3WZ", "", ["unknown_patient"], unknown=True)  # fmt: skip
        return rendered


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------


def _practices(rng: random.Random, lists: _Lists, count: int) -> list[_Practice]:
    """``count`` practices; every local town is served by one or more of them.

    With more practices than towns, towns are shared. Practices alternate between two
    clinical systems: ISO dates and natural case, or ``DD-MM-YYYY`` and upper case.
    """
    towns = sorted({p.town for p in lists.places if p.local})
    rng.shuffle(towns)
    codes = rng.sample(range(1000), count)
    served: dict[int, list[str]] = {}
    for i in range(max(count, len(towns))):
        served.setdefault(i % count, []).append(towns[i % len(towns)])
    return [
        _Practice(
            code=f"L85{codes[i]:03d}",
            towns=tuple(served[i]),
            dob_format="%Y-%m-%d" if i % 2 == 0 else "%d-%m-%Y",
            upper=i % 2 == 1,
        )
        for i in range(count)
    ]


# Every file a run writes: an earlier run's files are removed first, so that a directory
# never mixes two populations (say, five practices then three).
_OUTPUT_PATTERNS: Final = (
    "gp_*.csv",
    "mapping_gp_*.toml",
    "hospital.csv",
    "mapping_hospital.toml",
    "optout.csv",
    "mapping_optout.toml",
    "truth.csv",
    "truth_errors.csv",
    "truth_persons.csv",
    "summary.json",
)


def generate(
    out_dir: Path,
    *,
    persons: int,
    seed: int,
    practices: int = 3,
    opt_out: bool = True,
    params: SynthParams | None = None,
) -> SynthSummary:
    """Write a synthetic population's extracts, their mappings and the ground truth.

    Args:
        out_dir: where to write (created if missing). The files of an earlier run there
            (``gp_*.csv``, ``hospital.csv``, ``truth.csv``, … and their mappings) are
            removed first; other files are left alone.
        persons: distinct persons in the population (registered and outside).
        seed: the seed; the same seed and arguments give byte-identical files.
        practices: number of GP practices (1 or more).
        opt_out: also write the national opt-out register.
        params: rates and traps; :class:`SynthParams` defaults when omitted.

    Returns:
        A :class:`SynthSummary` of what was written.

    Raises:
        InputError: ``persons`` is below 1, ``practices`` is outside 1 to
            :data:`MAX_PRACTICES`, or a rate is out of range.
    """
    if persons < 1 or not 1 <= practices <= MAX_PRACTICES:
        raise InputError(
            f"synthetic data: persons must be at least 1, practices 1 to {MAX_PRACTICES}"
        )
    params = params or SynthParams()
    rng = random.Random(seed)
    shuffle_rng = random.Random(f"{seed}:shuffle")
    lists = _Lists()
    out_dir.mkdir(parents=True, exist_ok=True)
    for pattern in _OUTPUT_PATTERNS:
        for stale in sorted(out_dir.glob(pattern)):
            stale.unlink()
    population = _Population(rng, lists, params)
    gp_practices = _practices(rng, lists, practices)
    town_practice: dict[str, list[int]] = {}
    for i, pr in enumerate(gp_practices):
        for town in pr.towns:
            town_practice.setdefault(town, []).append(i)
    emitter = _Emitter(rng, lists, params, population.nhs)
    run = _Run(out_dir, gp_practices, opt_out, shuffle_rng, emitter, params)
    try:
        outsiders = 0
        local_in_hospital = 0
        made = 0
        ratio = params.outsider_share / (1.0 - params.outsider_share)
        while made < persons:
            hh = population.household(remaining=persons - made)
            choices = town_practice[hh.address.town]
            hh.practice = _pick(rng, choices)
            if len(gp_practices) > 1 and rng.random() < params.ghost_rate:
                hh.ghost_practice = _pick(
                    rng, [i for i in range(len(gp_practices)) if i != hh.practice]
                )
                if hh.previous is None:
                    hh.previous = population.previous_address(hh.address.town)
            made += len(hh.members)
            local_in_hospital += run.household(hh)
            while made < persons and outsiders < ratio * local_in_hospital:
                person, address = population.outsider()
                run.outsider(person, address)
                outsiders += 1
                made += 1
    finally:
        run.close()
    return run.summary(seed, persons)


class _Run:
    """Open files, row ids and counts of one :func:`generate` call."""

    def __init__(
        self,
        out_dir: Path,
        practices: list[_Practice],
        opt_out: bool,
        shuffle_rng: random.Random,
        emitter: _Emitter,
        params: SynthParams,
    ) -> None:
        self.out_dir = out_dir
        self.practices = practices
        self.counts: dict[str, Counter[str]] = {k: Counter() for k in ("gp", "hospital", "optout")}
        self.emitter = emitter
        self.rng = emitter.rng
        self.params = params
        self.gp = [
            _ShuffledCsv(out_dir / f"gp_{p.code}.csv", _GP_HEADER, encoding="utf-8",
                         crlf=False, rng=shuffle_rng)
            for p in practices
        ]  # fmt: skip
        self.gp_ids = [_between(self.rng, 10_000, 89_999) for _ in practices]
        self.hospital = _ShuffledCsv(out_dir / "hospital.csv", _HOSPITAL_HEADER,
                                     encoding="cp1252", crlf=True, rng=shuffle_rng)  # fmt: skip
        self.hospital_id = _between(self.rng, 100_000, 899_999)
        self.optout = (
            _ShuffledCsv(out_dir / "optout.csv", _OPTOUT_HEADER, encoding="utf-8-sig",
                         crlf=True, rng=shuffle_rng)
            if opt_out
            else None
        )  # fmt: skip
        self.optout_id = 0
        self.truth_handle = (out_dir / "truth.csv").open("w", encoding="utf-8", newline="")
        self.truth = csv.writer(self.truth_handle, lineterminator="\n")
        self.truth.writerow(("dataset", "local_id", "person_id"))
        self.errors_handle = (out_dir / "truth_errors.csv").open("w", encoding="utf-8", newline="")
        self.errors = csv.writer(self.errors_handle, lineterminator="\n")
        self.errors.writerow(("dataset", "local_id", "error"))
        self.persons_handle = (out_dir / "truth_persons.csv").open(
            "w", encoding="utf-8", newline=""
        )
        self.persons = csv.writer(self.persons_handle, lineterminator="\n")
        self.persons.writerow(
            ("person_id", "household_id", "sex", "age", "ltc_count", "frailty_index", "traps")
        )

    # -- households ---------------------------------------------------------------------

    def household(self, hh: _Household) -> int:
        """Write a local household's rows; return how many members have a hospital row."""
        rng = self.rng
        params = self.params
        numbers = [p.nhs for p in hh.members]
        in_hospital = 0
        for p in hh.members:
            if p.previous_family is not None and rng.random() < params.married_name_stale_rate:
                p.name_stale = "gp" if rng.random() < 0.25 else "hospital"
            gp_address = hh.previous if hh.stale == "gp" and hh.previous else hh.address
            hosp_address = hh.previous if hh.stale == "hospital" and hh.previous else hh.address
            assert hh.practice is not None
            self._gp_row(p, hh.practice, gp_address, numbers, ())
            if hh.ghost_practice is not None and hh.previous is not None:
                self._gp_row(p, hh.ghost_practice, hh.previous, numbers, ("ghost_registration",))
                if "ghost_registration" not in p.traps:
                    p.traps.append("ghost_registration")
            age = _age_on(p.dob, params.as_of)
            if rng.random() < _hospital_probability(age, p.ltc, params.hospital_base_rate):
                code = self.practices[hh.practice].code
                mothers = [
                    m.given for m in hh.members if m.sex == "F" and m.dob.year <= p.dob.year - 16
                ]
                self._hospital_row(p, hosp_address, numbers, code, mother=mothers[:1])
                in_hospital += 1
            self._optout_row(p, hh.address)
            self._person_row(p)
        return in_hospital

    def outsider(self, p: _Person, address: _Address) -> None:
        code = f"{_pick(self.rng, ('L84', 'L81', 'L83', 'J83', 'M85'))}{_below(self.rng, 1000):03d}"
        self._hospital_row(p, address, (), code)
        self._optout_row(p, address)
        self._person_row(p)

    # -- rows ---------------------------------------------------------------------------

    def _tagged(self, dataset: str, kind: DatasetKind, local_id: str, p: _Person,
                tags: Iterable[str]) -> None:  # fmt: skip
        self.truth.writerow((dataset, local_id, p.pid))
        counts = self.counts[kind]
        counts["rows"] += 1
        for tag in tags:
            self.errors.writerow((dataset, local_id, tag))
            counts[tag] += 1

    def _gp_row(self, p: _Person, practice: int, address: _Address, numbers: Sequence[str],
                extra: Sequence[str]) -> None:  # fmt: skip
        pr = self.practices[practice]
        r = self.emitter.render(p, address, self.params.gp, kind="gp", family_numbers=numbers)
        self.gp_ids[practice] += _between(self.rng, 1, 9)
        local_id = str(self.gp_ids[practice])
        case = _upper if pr.upper else _same
        if r.dob is None:
            dob_text = ""
        else:
            dob = date(1900, 1, 1) if r.dob_placeholder else r.dob
            dob_text = (
                f"{dob.year:04d}-{dob.month:02d}-{dob.day:02d}"
                if pr.dob_format == "%Y-%m-%d"
                else f"{dob.day:02d}-{dob.month:02d}-{dob.year:04d}"
            )
        age = _age_on(p.dob, self.params.as_of)
        self.gp[practice].write(
            [
                local_id,
                r.nhs or "",
                case(r.given),
                case(" ".join(r.middles)),
                case(r.family),
                dob_text,
                r.sex or "U",
                r.postcode or "",
                case(r.line1),
                case(address.town),
                str(p.ltc),
                "" if p.efi is None else f"{p.efi:.2f}",
                _age_band(age),
            ]
        )
        self._tagged(f"gp_{pr.code}", "gp", local_id, p, [*r.tags, *extra])

    def _hospital_row(self, p: _Person, address: _Address, numbers: Sequence[str],
                      practice_code: str, *, mother: Sequence[str] = ()) -> None:  # fmt: skip
        rng = self.rng
        params = self.params
        r = self.emitter.render(
            p, address, params.hospital, kind="hospital", family_numbers=numbers
        )
        tags = list(r.tags)
        self.hospital_id += _between(rng, 1, 40)
        local_id = f"H{self.hospital_id:07d}"
        age = _age_on(p.dob, params.as_of)
        # Name as the PAS holds it: "FAMILY, Given Middle".
        family = _hospital_family(r.family, rng, params.hyphen_partial_rate, tags)
        given = r.given
        if r.middles and rng.random() < 0.4:
            given = " ".join([given, *r.middles])
        if age == 0 and not r.unknown and rng.random() < 0.5:
            forms = ["Baby", "Baby Boy" if p.sex == "M" else "Baby Girl"]
            forms.extend(f"Baby Of {m}" for m in mother)
            given = _pick(rng, forms)
            tags.append("baby_of")
        elif rng.random() < 0.1:
            given = _upper(given)
        elif rng.random() < params.hospital_title_rate:
            given = f"{_title(p, age, rng)} {given}"
            tags.append("title")
        if r.unknown:
            given = "Male" if p.sex == "M" else "Female"
        if not r.unknown and " " not in given and rng.random() < params.hospital_initial_rate:
            given = given[0]
            tags.append("given_initial")
        roll = rng.random()
        separator = ", " if roll < 0.94 else ("," if roll < 0.99 else " , ")
        name = f"{family}{separator}{given}"
        name, lost = _cp1252(name, question_marks=rng.random() < params.question_mark_rate)
        if lost:
            tags.append("question_mark" if "?" in name else "transliterated")
        # NHS number: spaced 3-3-4 mostly.
        if r.nhs is None:
            nhs_text = ""
        elif rng.random() < 0.85:
            nhs_text = f"{r.nhs[:3]} {r.nhs[3:6]} {r.nhs[6:]}"
        else:
            nhs_text = r.nhs
        if r.dob is None:
            dob_text = ""
        else:
            dob = date(1900, 1, 1) if r.dob_placeholder else r.dob
            dob_text = f"{dob.day:02d}/{dob.month:02d}/{dob.year:04d}"
        numeric = rng.random() < 0.2
        if r.sex is None:
            sex_text = "Unknown"
        elif numeric:
            sex_text = "1" if r.sex == "M" else "2"
        else:
            sex_text = "Male" if r.sex == "M" else "Female"
        postcode = "" if r.postcode is None else _hospital_postcode(r.postcode, rng)
        line1 = _hospital_line(r.line1, rng)
        line1, _ = _cp1252(line1, question_marks=False)
        ae, admissions = _hospital_payload(p, age, rng)
        self.hospital.write(
            [
                local_id,
                nhs_text,
                name,
                dob_text,
                sex_text,
                line1,
                postcode,
                practice_code,
                str(ae),
                str(admissions),
            ]
        )
        self._tagged("hospital", "hospital", local_id, p, tags)

    def _optout_row(self, p: _Person, address: _Address) -> None:
        if self.optout is None or self.rng.random() >= self.params.opt_out_rate:
            return
        r = self.emitter.render(p, address, self.params.optout, kind="optout", family_numbers=())
        self.optout_id += 1
        local_id = f"NDOP{self.optout_id:07d}"
        dob = r.dob or p.dob
        self.optout.write(
            [
                local_id,
                r.nhs or "",
                _upper(r.family),
                _upper(r.given),
                f"{dob.year:04d}{dob.month:02d}{dob.day:02d}",
                r.postcode or "",
            ]
        )
        self._tagged("optout", "optout", local_id, p, r.tags)

    def _person_row(self, p: _Person) -> None:
        self.persons.writerow(
            (
                p.pid,
                p.household,
                p.sex,
                _age_on(p.dob, self.params.as_of),
                p.ltc,
                "" if p.efi is None else f"{p.efi:.2f}",
                ";".join(p.traps),
            )
        )

    # -- end ----------------------------------------------------------------------------

    def close(self) -> None:
        for writer in self.gp:
            writer.close()
        self.hospital.close()
        if self.optout is not None:
            self.optout.close()
        self.truth_handle.close()
        self.errors_handle.close()
        self.persons_handle.close()

    def summary(self, seed: int, persons: int) -> SynthSummary:
        out = self.out_dir
        datasets: list[DatasetSummary] = []
        for pr, writer in zip(self.practices, self.gp, strict=True):
            mapping = out / f"mapping_gp_{pr.code}.toml"
            mapping.write_text(_gp_mapping(pr.code, pr.dob_format), encoding="utf-8")
            datasets.append(DatasetSummary(f"gp_{pr.code}", "gp", out / f"gp_{pr.code}.csv",
                                           mapping, "utf-8", writer.rows))  # fmt: skip
        mapping = out / "mapping_hospital.toml"
        mapping.write_text(_HOSPITAL_MAPPING, encoding="utf-8")
        datasets.append(DatasetSummary("hospital", "hospital", out / "hospital.csv", mapping,
                                       "cp1252", self.hospital.rows))  # fmt: skip
        if self.optout is not None:
            mapping = out / "mapping_optout.toml"
            mapping.write_text(_OPTOUT_MAPPING, encoding="utf-8")
            datasets.append(DatasetSummary("optout", "optout", out / "optout.csv", mapping,
                                           "utf-8-sig", self.optout.rows))  # fmt: skip
        injected = {k: dict(sorted(v.items())) for k, v in self.counts.items() if v}
        summary = SynthSummary(
            out_dir=out,
            seed=seed,
            persons=persons,
            datasets=tuple(datasets),
            truth=out / "truth.csv",
            truth_errors=out / "truth_errors.csv",
            truth_persons=out / "truth_persons.csv",
            injected=injected,
        )
        manifest = {
            "seed": seed,
            "persons": persons,
            "params": _jsonable(asdict(self.params)),
            "datasets": [
                {
                    "name": d.name,
                    "kind": d.kind,
                    "file": d.path.name,
                    "mapping": d.mapping.name,
                    "encoding": d.encoding,
                    "rows": d.rows,
                    "one_record_per_person": d.one_record_per_person,
                }
                for d in datasets
            ],
            "injected": injected,
        }
        (out / "summary.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        return summary


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, date):
        return value.isoformat()
    return value


def _same(text: str) -> str:
    return text


def _hospital_family(family: str, rng: random.Random, partial: float, tags: list[str]) -> str:
    """The family name as the PAS writes it: upper case, punctuation as keyed."""
    name = _upper(family)
    if "-" in name and rng.random() < partial:
        parts = name.split("-")
        name = parts[0] if rng.random() < 0.7 else parts[-1]
        tags.append("hyphen_partial")
    elif "-" in name and rng.random() < 0.15:
        name = name.replace("-", " ")
    if "'" in name:
        roll = rng.random()
        if roll < 0.2:
            name = name.replace("'", "")
        elif roll < 0.3:
            name = name.replace("'", " ")
        elif roll < 0.4:
            name = name.replace("'", "\u2019")
    if name.startswith("MC") and rng.random() < 0.1:
        name = "MC " + name[2:]
    if " " in name and "-" not in family and rng.random() < 0.2:
        name = name.replace(" ", "")  # ST JOHN → STJOHN, DE SOUZA → DESOUZA
    return name


def _title(p: _Person, age: int, rng: random.Random) -> str:
    if age >= 25 and rng.random() < 0.03:
        return "Dr"
    if p.sex == "M":
        return "Master" if age < 16 else "Mr"
    if age < 16:
        return "Miss"
    if p.previous_family is not None or (age > 60 and rng.random() < 0.7):
        return "Mrs"
    return "Ms" if rng.random() < 0.4 else "Miss"


def _hospital_postcode(postcode: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.8:
        return postcode
    if roll < 0.9:
        return postcode.replace(" ", "")
    if roll < 0.95:
        return postcode.lower()
    if roll < 0.98:
        return postcode.replace(" ", "").lower()
    return postcode.replace(" ", "  ")


_ABBREVIATIONS: Final = (
    (" Street", " St"),
    (" Road", " Rd"),
    (" Lane", " Ln"),
    (" Close", " Cl"),
    (" Avenue", " Ave"),
    (" Drive", " Dr"),
)


def _hospital_line(line: str, rng: random.Random) -> str:
    text = _upper(line)
    if rng.random() < 0.3:
        for long, short in _ABBREVIATIONS:
            text = text.replace(_upper(long), _upper(short))
    return text


def _hospital_payload(p: _Person, age: int, rng: random.Random) -> tuple[int, int]:
    efi = p.efi or 0.0
    rate = p.risk * math.exp(
        -1.9
        + 0.25 * min(p.ltc, 6)
        + 2.0 * efi
        + 0.015 * max(age - 70, 0)
        + (0.6 if age < 5 else 0.0)
    )
    rate = min(rate, 20.0)
    ae = _poisson(rng, rate)
    p_admit = min(0.15 + 0.006 * max(age - 40, 0) + 0.03 * p.ltc, 0.7)
    admitted = sum(1 for _ in range(ae) if rng.random() < p_admit)
    direct = _poisson(rng, rate * 0.12)
    return ae, admitted + direct
