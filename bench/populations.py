"""Stress a linkage spec on population structures the SDK's generator under-represents.

    .venv/bin/python -m bench.populations [--people N] [--seed N] [--spec S]
                                          [--scenario NAME ...] [--json FILE]

Each scenario is a population with ground truth, written for this module (its own name
lists, household and address model and error rates; nothing is taken from
``synth/tessera_synth/generator.py``), rendered as two extracts the way real systems write them:

- ``gp``: a practice list, split name columns, ``DD/MM/YYYY`` dates, sex ``M``/``F``;
- ``hospital``: a PAS export, one ``SURNAME, Forename Middle`` column, NHS numbers with
  spaces, sex coded ``1``/``2``; residents who attended plus outsiders (visitors, people
  registered elsewhere) drawn from the same name distribution, so namesakes are real.

Both files go through the real mappings and normalisation (``client_sdk.pipeline``), then
the real tokeniser and the broker's linkage rules, through ``bench.spec_eval.evaluate``:
overall pairwise precision and recall, and each match key's precision alone. The
scenarios and what each one tests are in docs/linkage-spec.md ("Other population
structures").
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from bench.population_model import (
    CONCENTRATED,
    ENGLISH,
    INWARD_LETTERS,
    NICKNAMES,
    SPELLINGS,
    TODAY,
    Community,
    Institution,
    Person,
    Postcodes,
    Structure,
    make_population,
    nhs_valid,
)
from bench.spec_eval import evaluate
from client_sdk.mapping import load_mapping
from client_sdk.pipeline import iter_records
from client_sdk.record import NormalisedRecord
from keys.spec import LinkageSpec, default_spec, load_spec

__all__ = [
    "SCENARIOS",
    "TODAY",
    "Community",
    "Errors",
    "Institution",
    "Person",
    "Scenario",
    "Structure",
    "build",
    "main",
    "run",
    "run_scenario",
]


# --- errors ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Errors:
    """Per-record error rates of one extract (each applied independently)."""

    nhs_missing: float = 0.02
    nhs_mistyped: float = 0.003  # one digit or an adjacent pair: fails the check, so missing
    nhs_valid_typo: float = 0.0  # a keying error that still passes the modulus-11 check
    nhs_relative: float = 0.0  # a relative's valid NHS number (the wrong patient picked)
    given_typo: float = 0.01
    family_typo: float = 0.01
    nickname: float = 0.03
    spelling: float = 0.0  # another spelling of the same name (MOHAMMED/MUHAMMAD)
    by_middle: float = 0.0  # recorded under the middle name alone (known by it)
    name_swap: float = 0.0  # given and family name the wrong way round
    hyphen: float = 0.3  # a double-barrelled family name written another way
    suffix_kept: float = 0.0  # JR/SR written into the family name
    dob_swap: float = 0.005
    dob_day_typo: float = 0.003
    dob_year_typo: float = 0.0
    dob_jan1: float = 0.0  # only the year known: 01/01 of the year recorded
    postcode_missing: float = 0.01
    postcode_typo: float = 0.005
    sex_missing: float = 0.01
    baby_of: float = 0.0  # newborns recorded as "BABY OF <mother>"


_HOSPITAL = Errors(
    nhs_missing=0.12, given_typo=0.03, family_typo=0.03, nickname=0.08, dob_swap=0.02
)
"""A hospital PAS's errors: more missing NHS numbers, typos, nicknames and swaps."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A population structure, its two extracts' error rates, and who attends hospital."""

    name: str
    summary: str
    structure: Structure = Structure()
    gp: Errors = Errors()
    hospital: Errors = _HOSPITAL
    gp_coverage: float = 0.96  # residents on the practice list
    hospital_share: float = 0.45  # residents in the hospital extract
    outsiders: float = 0.1  # hospital records of people from elsewhere, as a share of residents
    movers: float = 0.1  # of residents in hospital: a newer address
    far_movers: float = 0.5  # of movers: a new district


def _typo(name: str, rng: random.Random) -> str:
    if len(name) < 3:
        return name
    i = rng.randrange(1, len(name))
    roll = rng.random()
    if roll < 0.35:
        return name[:i] + rng.choice("ABCDEFGHIJKLMNOPRSTUWY") + name[i + 1 :]
    if roll < 0.6:
        return name[:i] + name[i + 1 :]
    if roll < 0.85 and i < len(name) - 1:
        return name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    return name[:i] + name[i] + name[i:]


def _valid_typo(number: str, rng: random.Random) -> str:
    """A keying error that still passes the check: two digits changed, or transposed
    with the check digit (one digit alone or two adjacent always fail modulus 11)."""
    for _ in range(200):
        digits = list(number)
        if rng.random() < 0.5:
            digits[8], digits[9] = digits[9], digits[8]
        else:
            for i in rng.sample(range(10), 2):
                digits[i] = str(rng.randrange(10))
        candidate = "".join(digits)
        if candidate != number and nhs_valid(candidate):
            return candidate
    return number


def _invalid_typo(number: str, rng: random.Random) -> str:
    digits = list(number)
    i = rng.randrange(9)
    if rng.random() < 0.5 and digits[i] != digits[i + 1]:
        digits[i], digits[i + 1] = digits[i + 1], digits[i]
    else:
        digits[i] = str((int(digits[i]) + rng.randrange(1, 10)) % 10)
    return "".join(digits)


def _safe_date(candidate: date | None, fallback: date) -> date:
    if candidate is None or not (date(TODAY.year - 120, 1, 1) <= candidate <= TODAY):
        return fallback
    return candidate


def _make_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _year_typo(dob: date, rng: random.Random) -> date:
    y = f"{dob.year:04d}"
    roll = rng.random()
    if roll < 0.4:  # last two digits transposed: 1980 -> 1908
        new = y[:2] + y[3] + y[2]
    elif roll < 0.8:  # one digit of the decade or year wrong
        i = rng.choice((2, 3))
        new = y[:i] + str((int(y[i]) + rng.choice((1, -1, 2))) % 10) + y[i + 1 :]
    else:  # the wrong century
        new = ("20" if y[:2] == "19" else "19") + y[2:]
    return _safe_date(_make_date(int(new), dob.month, dob.day), dob)


def _day_typo(dob: date, rng: random.Random) -> date:
    day = f"{dob.day:02d}"
    i = rng.randrange(2)
    new = day[:i] + str(rng.randrange(10)) + day[i + 1 :]
    return _safe_date(_make_date(dob.year, dob.month, int(new) or 1), dob)


def _hyphenated(family: str, rng: random.Random) -> str:
    """A double-barrelled name written another way (or one half of it)."""
    first, second = family.split("-", 1)
    return rng.choice((f"{first} {second}", f"{first}{second}", first, second, f"{second}-{first}"))


@dataclass(frozen=True, slots=True)
class _Row:
    nhs: str
    given: str
    middle: str
    family: str
    dob: str
    sex: str
    postcode: str


def _render(
    p: Person,
    errors: Errors,
    rng: random.Random,
    *,
    people: Sequence[Person],
    postcode: str,
    mother: Person | None,
) -> _Row:
    nhs = p.nhs
    if rng.random() < errors.nhs_relative and p.relatives:
        nhs = people[rng.choice(p.relatives)].nhs
    elif rng.random() < errors.nhs_valid_typo:
        nhs = _valid_typo(nhs, rng)
    elif rng.random() < errors.nhs_mistyped:
        nhs = _invalid_typo(nhs, rng)
    if rng.random() < errors.nhs_missing:
        nhs = ""
    given, middle = p.given, p.middle
    if given in SPELLINGS and rng.random() < errors.spelling:
        given = rng.choice(SPELLINGS[given])
    if middle and rng.random() < errors.by_middle:
        given, middle = middle, ""
    if given in NICKNAMES and rng.random() < errors.nickname:
        given = rng.choice(NICKNAMES[given])
    if rng.random() < errors.given_typo:
        given = _typo(given, rng)
    family = p.family
    if family in SPELLINGS and rng.random() < errors.spelling:
        family = rng.choice(SPELLINGS[family])
    if "-" in family and rng.random() < errors.hyphen:
        family = _hyphenated(family, rng)
    if rng.random() < errors.family_typo:
        family = _typo(family, rng)
    if p.suffix and rng.random() < errors.suffix_kept:
        family = f"{family} {p.suffix}"
    if p.newborn and rng.random() < errors.baby_of:
        given = f"BABY OF {mother.given if mother else 'MOTHER'}"
        middle = ""
    if rng.random() < errors.name_swap:
        given, family = family, given
    dob = p.dob
    if rng.random() < errors.dob_jan1:
        dob = date(dob.year, 1, 1)
    elif rng.random() < errors.dob_year_typo:
        dob = _year_typo(dob, rng)
    elif rng.random() < errors.dob_swap and dob.day <= 12:
        dob = date(dob.year, dob.day, dob.month)
    elif rng.random() < errors.dob_day_typo:
        dob = _day_typo(dob, rng)
    pc = postcode
    if rng.random() < errors.postcode_missing:
        pc = ""
    elif rng.random() < errors.postcode_typo:
        pc = pc[:-2] + pc[-1] + pc[-2] if pc[-1] != pc[-2] else pc[:-1] + rng.choice(INWARD_LETTERS)
    sex = "" if rng.random() < errors.sex_missing else p.sex
    return _Row(nhs, given, middle, family, f"{dob.day:02d}/{dob.month:02d}/{dob.year}", sex, pc)


# --- extracts, read through the real pipeline -------------------------------------------------

_GP_MAPPING = """[source]
format = "csv"
encoding = "utf-8"
[record]
id = "PATIENT_ID"
[identifiers]
nhs_number = "NHS_NO"
given_name = "FORENAME"
middle_names = "MIDDLE_NAMES"
family_name = "SURNAME"
date_of_birth = { column = "DOB", formats = ["%d/%m/%Y"] }
sex = "SEX"
postcode = "POSTCODE"
"""
_HOSPITAL_MAPPING = """[source]
format = "csv"
encoding = "utf-8"
[record]
id = "HOSP_NO"
[identifiers]
nhs_number = "NHS NUMBER"
full_name = { column = "PATIENT NAME", layout = "FAMILY, GIVEN" }
date_of_birth = { column = "D.O.B", formats = ["%d/%m/%Y"] }
sex = "GENDER"
postcode = "POST CODE"
"""


def _write(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def build(
    scenario: Scenario, people: int, *, seed: int, work: Path
) -> tuple[dict[str, list[NormalisedRecord]], dict[tuple[str, str], int]]:
    """Generate a scenario's two extracts, read them through the SDK, return the truth.

    Returns:
        ``(datasets, truth)`` as :func:`bench.spec_eval.evaluate` takes them.
    """
    rng = random.Random(f"{scenario.name}/{seed}")
    population = make_population(people, rng, scenario.structure)
    outsiders = make_population(  # people from elsewhere: the same names, ordinary homes
        max(1, int(people * scenario.outsiders)),
        random.Random(f"out/{seed}"),
        replace(scenario.structure, institutions=()),
    )
    held = {p.nhs for p in population}
    for o in outsiders:  # distinct people and NHS numbers, the same names
        o.pid += len(population)
        while o.nhs in held:
            o.nhs = _valid_typo(o.nhs, rng)
        o.relatives = [r + len(population) for r in o.relatives]
    everyone = population + outsiders
    other_places = Postcodes(rng, ("M", "L", "NE", "SW"))
    mothers: dict[int, Person] = {}
    for p in everyone:
        if p.sex == "F" and not p.newborn:
            mothers.setdefault(p.family_id, p)
    gp_rows: list[list[str]] = []
    hospital_rows: list[list[str]] = []
    truth: dict[tuple[str, str], int] = {}
    for p in population:
        if rng.random() < scenario.gp_coverage:
            local_id = f"G{len(gp_rows):07d}"
            r = _render(p, scenario.gp, rng, people=everyone, postcode=p.postcode, mother=None)
            gp_rows.append([local_id, r.nhs, r.given, r.middle, r.family, r.dob, r.sex, r.postcode])
            truth[("gp", local_id)] = p.pid
    attenders = [p for p in population if rng.random() < scenario.hospital_share] + outsiders
    rng.shuffle(attenders)
    for p in attenders:
        postcode = p.postcode
        if p.pid < len(population) and rng.random() < scenario.movers:
            far = rng.random() < scenario.far_movers
            postcode = other_places.new() if far else other_places.near(p.postcode)
        r = _render(
            p,
            scenario.hospital,
            rng,
            people=everyone,
            postcode=postcode,
            mother=mothers.get(p.family_id),
        )
        local_id = f"H{len(hospital_rows):07d}"
        nhs = f"{r.nhs[:3]} {r.nhs[3:6]} {r.nhs[6:]}" if r.nhs else ""
        name = f"{r.family}, {r.given} {r.middle}".strip()
        sex = {"M": "1", "F": "2"}.get(r.sex, "9")
        hospital_rows.append([local_id, nhs, name, r.dob, sex, r.postcode])
        truth[("hospital", local_id)] = p.pid
    header_gp = ["PATIENT_ID", "NHS_NO", "FORENAME", "MIDDLE_NAMES", "SURNAME", "DOB", "SEX"]
    _write(work / "gp.csv", [*header_gp, "POSTCODE"], gp_rows)
    _write(
        work / "hospital.csv",
        ["HOSP_NO", "NHS NUMBER", "PATIENT NAME", "D.O.B", "GENDER", "POST CODE"],
        hospital_rows,
    )
    (work / "gp.toml").write_text(_GP_MAPPING)
    (work / "hospital.toml").write_text(_HOSPITAL_MAPPING)
    datasets = {
        name: list(
            iter_records(work / f"{name}.csv", load_mapping(work / f"{name}.toml"), today=TODAY)
        )
        for name in ("gp", "hospital")
    }
    kept = {(name, r.local_id) for name, records in datasets.items() for r in records}
    return datasets, {k: v for k, v in truth.items() if k in kept}


# --- the scenarios ----------------------------------------------------------------------------

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "baseline",
        "English names, ordinary households, moderate hospital errors (for comparison)",
    ),
    Scenario(
        "concentrated_names",
        "South Asian and Welsh community: 26 family names, MOHAMMED a third of boys, "
        "spellings vary between systems, some known by their middle name, 40 households "
        "a postcode (tower blocks)",
        structure=Structure(
            community=replace(CONCENTRATED, households_per_postcode=40), twins=0.02
        ),
        gp=replace(Errors(), spelling=0.1, by_middle=0.02),
        hospital=replace(_HOSPITAL, spelling=0.35, by_middle=0.1),
    ),
    Scenario(
        "shared_addresses",
        "care homes (60 residents aged 75-100), student halls (400 aged 18-22), a prison "
        "(600 men aged 18-50) and tower blocks, each one postcode",
        structure=Structure(
            community=replace(ENGLISH, households_per_postcode=40),
            institutions=(
                Institution(40, 60, 75, 100),
                Institution(8, 400, 18, 22),
                Institution(2, 600, 18, 50, "M"),
            ),
        ),
        hospital=replace(_HOSPITAL, nhs_missing=0.2),
    ),
    Scenario(
        "multiple_births",
        "8% twins and 1% triplets (half with the same initial), newborns recorded as "
        "'BABY OF <mother>' in hospital, 1% of hospital records with a relative's NHS number",
        structure=Structure(twins=0.08, triplets=0.01, twin_same_initial=0.5, newborns=0.3),
        hospital=replace(_HOSPITAL, baby_of=0.6, nhs_relative=0.01),
    ),
    Scenario(
        "missing_nhs",
        "A&E: half of hospital records without an NHS number, 30% outsiders (visitors), "
        "1% of numbers mistyped but still passing modulus 11",
        hospital=replace(_HOSPITAL, nhs_missing=0.5, nhs_valid_typo=0.01),
        outsiders=0.3,
    ),
    Scenario(
        "name_order",
        "given and family names swapped in 8% of hospital records, 15% double-barrelled "
        "family names written with a space, joined, one half or reversed",
        structure=Structure(double_barrelled=0.15),
        gp=replace(Errors(), name_swap=0.01, hyphen=0.2),
        hospital=replace(_HOSPITAL, name_swap=0.08, hyphen=0.6, nhs_missing=0.2),
    ),
    Scenario(
        "date_errors",
        "day and month swapped 5%, year typos (1980 -> 1908) 2%, 01/01 of the year 3%, "
        "day typos 2%, a quarter of hospital records without an NHS number",
        gp=replace(Errors(), dob_swap=0.01, dob_year_typo=0.003, dob_jan1=0.005),
        hospital=replace(
            _HOSPITAL,
            nhs_missing=0.25,
            dob_swap=0.05,
            dob_year_typo=0.02,
            dob_jan1=0.03,
            dob_day_typo=0.02,
        ),
    ),
    Scenario(
        "movers",
        "35% of hospital records at a newer address, half of them in another district",
        hospital=replace(_HOSPITAL, nhs_missing=0.15),
        movers=0.35,
    ),
    Scenario(
        "father_son",
        "30% of families: a son with his father's names at the same address, JR/SR in "
        "half the GP records and dropped in hospital; 1% of hospital records with a "
        "relative's NHS number",
        structure=Structure(junior=0.3),
        gp=replace(Errors(), suffix_kept=0.5),
        hospital=replace(_HOSPITAL, suffix_kept=0.05, nhs_relative=0.01),
    ),
    Scenario(
        "hostels",
        "asylum hostels and hostels for the homeless (200 residents each), mostly men of "
        "the concentrated community, half with an unknown date of birth recorded as "
        "1 January; 35% without an NHS number in hospital",
        structure=Structure(
            community=CONCENTRATED,
            institutions=(Institution(15, 200, 18, 45, "M", 0.5), Institution(5, 200, 18, 60)),
        ),
        gp=replace(Errors(), nhs_missing=0.1, spelling=0.1),
        hospital=replace(_HOSPITAL, nhs_missing=0.35, spelling=0.3),
    ),
    Scenario(
        "combined",
        "the concentrated community with twins, juniors, shared postcodes, movers and "
        "every error above at once, at lower rates",
        structure=Structure(
            community=replace(CONCENTRATED, households_per_postcode=30),
            twins=0.04,
            triplets=0.004,
            twin_same_initial=0.5,
            newborns=0.1,
            junior=0.15,
            double_barrelled=0.05,
            institutions=(Institution(10, 60, 75, 100), Institution(2, 400, 18, 22)),
        ),
        gp=replace(Errors(), spelling=0.1, by_middle=0.02, suffix_kept=0.3, dob_jan1=0.003),
        hospital=replace(
            _HOSPITAL,
            nhs_missing=0.3,
            nhs_valid_typo=0.003,
            nhs_relative=0.005,
            spelling=0.3,
            by_middle=0.05,
            name_swap=0.03,
            hyphen=0.5,
            dob_year_typo=0.01,
            dob_jan1=0.01,
            dob_day_typo=0.01,
            baby_of=0.5,
        ),
        outsiders=0.2,
        movers=0.25,
    ),
)


def run_scenario(
    scenario: Scenario, spec: LinkageSpec, *, people: int, seed: int
) -> dict[str, Any]:
    """Build one scenario and measure ``spec`` on it (``bench.spec_eval.evaluate``'s report)."""
    with tempfile.TemporaryDirectory() as tmp:
        datasets, truth = build(scenario, people, seed=seed, work=Path(tmp))
    report = evaluate(spec, datasets, truth)
    report["scenario"] = scenario.name
    return report


def run(n: int = 30_000, *, seed: int = 7) -> dict[str, float]:
    """``bench/run.py`` entry point: the default spec on every scenario of ``n`` persons.

    Returns:
        Per scenario, wrong links per 10,000 linked pairs (1 - precision) and recall in %.
    """
    spec = default_spec()
    numbers: dict[str, float] = {}
    for scenario in SCENARIOS:
        report = run_scenario(scenario, spec, people=n, seed=seed)
        numbers[f"{scenario.name} wrong per 10k"] = (1 - report["precision"]) * 10_000
        numbers[f"{scenario.name} recall %"] = report["recall"] * 100
    return numbers


def _markdown(report: dict[str, Any], summary: str) -> str:
    lines = [
        f"**{report['scenario']}**: {summary}. {report['records']:,} records, "
        f"{report['true_pairs']:,} true pairs; precision **{report['precision']:.4f}** "
        f"({report['found_pairs']:,} linked pairs), recall **{report['recall']:.4f}**.",
        "",
        "| match key | alone: precision | alone: recall | joins | joins right |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, m in report["per_key"].items():
        lines.append(
            f"| `{name}` | {m['standalone_precision']:.4f} | {m['standalone_recall']:.4f} | "
            f"{m['cascade_joins']:,} | {m['cascade_precision']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--spec", type=Path, default=None)
    parser.add_argument("--people", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scenario", action="append", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--markdown", action="store_true", help="tables for docs/")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    spec = default_spec() if args.spec is None else load_spec(args.spec)
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    reports = []
    print(f"spec {spec.name} ({spec.content_hash[:19]}), {args.people:,} persons, seed {args.seed}")
    for scenario in chosen:
        started = time.perf_counter()
        report = run_scenario(scenario, spec, people=args.people, seed=args.seed)
        report["seconds"] = time.perf_counter() - started
        reports.append(report)
        if args.markdown:
            print(_markdown(report, scenario.summary), end="\n\n", flush=True)
            continue
        flag = "  << below 0.995" if report["precision"] < 0.995 else ""
        print(
            f"\n== {scenario.name}: {report['records']:,} records, {report['true_pairs']:,} "
            f"true pairs, precision {report['precision']:.4f}, recall {report['recall']:.4f}"
            f"{flag}"
        )
        print(f"   {'match key':<32} {'alone P':>8} {'alone R':>8} {'joins':>7} {'join P':>7}")
        for name, m in report["per_key"].items():
            print(
                f"   {name:<32} {m['standalone_precision']:>8.4f} "
                f"{m['standalone_recall']:>8.4f} {m['cascade_joins']:>7} "
                f"{m['cascade_precision']:>7.4f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
