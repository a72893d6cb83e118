"""The quality report: counts, duplicates, capped problem lists, and the grade thresholds."""

from __future__ import annotations

import json

import pytest

from client_sdk.normalise import Defect
from client_sdk.quality import FIELDS, GRADE_THRESHOLDS, QualityCollector, grade_report

ALL = dict.fromkeys(FIELDS, 1.0)


def _collector(columns=FIELDS):
    collector = QualityCollector(source="x.csv", max_problems=3)
    collector.begin(source="ignored", format="csv", columns={f: f.upper() for f in columns})
    return collector


def test_counts_per_field_and_json():
    collector = _collector()
    valid = (0,) * len(FIELDS)
    collector.observe(2, valid, "9990079196")
    collector.observe(3, (Defect.PLACEHOLDER, Defect.MISSING) + (0,) * (len(FIELDS) - 2), None)
    collector.observe(4, (Defect.INVALID,) + (0,) * (len(FIELDS) - 1), None)
    collector.reject(5, None, "malformed row: 3 fields, header has 8")
    report = collector.report()
    assert report.source == "x.csv"
    assert (report.rows_read, report.records_used, report.rows_rejected) == (4, 3, 1)
    nhs = report.field("nhs_number")
    assert (nhs.valid, nhs.missing, nhs.invalid, nhs.placeholder) == (1, 0, 1, 1)
    assert nhs.completeness == pytest.approx(1 / 3, abs=1e-6)
    assert nhs.validity == 0.5
    assert report.field("given_name").missing == 1
    assert [(p.line, p.column) for p in report.value_problems] == [(4, "NHS_NUMBER")]
    json.dumps(report.model_dump())


def test_duplicate_nhs_numbers_are_counted_not_listed():
    collector = _collector()
    for number in ["9990079196", "9990237573", "9990079196", "9990079196", "4000079190"]:
        collector.observe(1, (0,) * len(FIELDS), number)
    report = collector.report()
    assert report.duplicate_nhs_numbers == 2
    assert "9990079196" not in report.model_dump_json()


def test_problem_lists_are_capped_but_counted():
    collector = _collector()
    for line in range(10):
        collector.reject(line, None, "malformed row")
    report = collector.report()
    assert len(report.problems) == 3
    assert report.problems_not_listed == 7
    assert report.rows_rejected == 10


def test_unmapped_fields_are_not_counted():
    collector = _collector(columns=["family_name", "date_of_birth"])
    collector.observe(2, (Defect.MISSING,) * len(FIELDS), None)
    report = collector.report()
    assert not report.field("nhs_number").mapped
    assert report.field("nhs_number").missing == 0
    assert report.field("family_name").missing == 1


def test_no_records_is_not_rated():
    assert grade_report(ALL, rejected=0, duplicates=0, records=0) == (
        "Not rated",
        ["no usable records"],
    )


def test_gold():
    assert grade_report(ALL, rejected=0.0005, duplicates=0.001, records=100)[0] == "Gold"


@pytest.mark.parametrize(
    ("changes", "rejected", "duplicates", "grade"),
    [
        ({"nhs_number": 0.94}, 0, 0, "Silver"),
        ({"nhs_number": 0.0}, 0, 0, "Silver"),  # excellent demographics without NHS numbers
        ({"nhs_number": 0.0, "postcode": 0.9}, 0, 0, "Bronze"),
        ({"nhs_number": 0.79, "sex": 0.5}, 0, 0, "Bronze"),
        ({}, 0.002, 0, "Silver"),
        ({}, 0, 0.01, "Silver"),
        ({}, 0.02, 0, "Bronze"),
        ({"date_of_birth": 0.93}, 0, 0, "Bronze"),
        ({"date_of_birth": 0.89}, 0, 0, "Not rated"),
        ({"nhs_number": 0.4, "postcode": 0.7}, 0, 0, "Not rated"),
        ({}, 0.06, 0, "Not rated"),
    ],
)
def test_grade_thresholds(changes, rejected, duplicates, grade):
    found, notes = grade_report(
        ALL | changes, rejected=rejected, duplicates=duplicates, records=1000
    )
    assert found == grade
    if grade != "Gold":
        assert notes, "a grade below Gold says what the next grade needs"


def test_thresholds_are_ordered():
    gold, silver, bronze = (GRADE_THRESHOLDS[g] for g in ("Gold", "Silver", "Bronze"))
    assert gold.max_rejected < silver.max_rejected < bronze.max_rejected
    for lower, higher in ((silver, gold), (bronze, silver)):
        for name, minimum in lower.completeness.items():
            assert higher.completeness.get(name, 1.0) >= minimum
