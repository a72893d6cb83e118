"""Dates of birth heaped on one day of the year (default dates for unknown birthdays)."""

from __future__ import annotations

import json
import random
from datetime import date, timedelta

import pytest

from client_sdk.cli import cli
from client_sdk.quality import (
    FIELDS,
    HEAPING_MIN_RECORDS,
    QualityCollector,
    find_birth_day_heaping,
)
from keys.cliutil import run_cli

START = date(1940, 1, 1)
SPAN = (date(2020, 12, 31) - START).days


def _spread(count, seed=1):
    rng = random.Random(seed)
    return [START + timedelta(days=rng.randrange(SPAN)) for _ in range(count)]


def _on(month, day, count, seed=2):
    rng = random.Random(seed)
    return [date(rng.randrange(1940, 2020, 4), month, day) for _ in range(count)]  # leap years too


def _month_days(dates):
    counts: dict[tuple[int, int], int] = {}
    for born in dates:
        counts[(born.month, born.day)] = counts.get((born.month, born.day), 0) + 1
    return counts


def _heaped(dates):
    return [(h.month, h.day) for h in find_birth_day_heaping(_month_days(dates))]


@pytest.mark.parametrize("size", [50, 400, 5_000, 50_000])
def test_births_spread_over_the_year_are_not_heaped(size):
    assert _heaped(_spread(size)) == []


def test_seasonal_births_are_not_heaped():
    # September and October 1.2 times as busy as the rest of the year
    dates = _spread(40_000) + [d for d in _spread(8_000, seed=4) if d.month in (9, 10)]
    assert _heaped(dates) == []


@pytest.mark.parametrize("days", [30, 7])
def test_a_narrow_range_of_births_is_not_heaped(days):
    # a maternity unit's month or a birth cohort's week: every day busy, none alone
    rng = random.Random(5)
    first = date(2024, 4, 5)
    dates = [first + timedelta(days=rng.randrange(days)) for _ in range(3_000)]
    assert _heaped(dates) == []


def test_default_dates_are_heaped():
    dates = _spread(20_000) + _on(1, 1, 400) + _on(7, 1, 150, seed=6)
    found = find_birth_day_heaping(_month_days(dates))
    assert [(h.month, h.day) for h in found] == [(1, 1), (7, 1)]
    first = found[0]
    assert first.records >= 400
    assert first.share == pytest.approx(first.records / len(dates), abs=1e-6)
    assert first.times_expected > 5


def test_the_first_of_every_month_is_heaped():
    dates = _spread(30_000) + [d for m in range(1, 13) for d in _on(m, 1, 200, seed=m)]
    assert sorted(_heaped(dates)) == [(m, 1) for m in range(1, 13)]


def test_small_extracts_need_a_clear_excess():
    others = [d for d in _spread(100) if (d.month, d.day) != (1, 1)]
    assert _heaped(others + _on(1, 1, HEAPING_MIN_RECORDS - 1)) == []
    assert _heaped(_spread(200) + _on(1, 1, 12)) == [(1, 1)]
    # 1 January a little above chance in a large extract is not a finding
    assert _heaped(_spread(10_000) + _on(1, 1, 30)) == []


def test_leap_days_expect_a_quarter():
    every_day = [START + timedelta(days=n) for n in range(SPAN)] * 3
    assert _heaped(every_day) == []
    # fewer than on any other day, but 3.5 times what a leap day expects
    assert _heaped(every_day + _on(2, 29, 150)) == [(2, 29)]


def _collector():
    collector = QualityCollector(source="x.csv")
    collector.begin(source="x.csv", format="csv", columns={f: f.upper() for f in FIELDS})
    return collector


def test_collector_counts_dates_and_blocks_absorb():
    dates = [d.isoformat() for d in _spread(3_000) + _on(1, 1, 120)]
    single, first, second = _collector(), _collector(), _collector()
    for line, born in enumerate(dates):
        single.observe(line, (0,) * len(FIELDS), None, born)
        (first if line < 1_500 else second).observe(line, (0,) * len(FIELDS), None, born)
    single.observe(0, (0,) * len(FIELDS), None, None)
    first.observe(0, (0,) * len(FIELDS), None, None)
    first.absorb(second)
    report = single.report()
    assert [(h.month, h.day) for h in report.date_of_birth_heaping] == [(1, 1)]
    assert first.report().date_of_birth_heaping == report.date_of_birth_heaping
    dumped = report.model_dump(mode="json")
    assert list(dumped)[-3:] == ["grade_notes", "date_of_birth_heaping", "nhs_numbers_unverified"]
    assert set(dumped["date_of_birth_heaping"][0]) == {
        "month",
        "day",
        "records",
        "share",
        "times_expected",
    }
    assert all(born not in json.dumps(dumped) for born in dates)


def _extract(path, dates):
    rows = [f"P{i},SMITH,JOHN,{born:%d/%m/%Y}" for i, born in enumerate(dates)]
    path.write_text("ID,SURNAME,FORENAME,DOB\n" + "\n".join(rows) + "\n", encoding="utf-8")


def _check(tmp_path, name, capsys):
    extract, mapping = tmp_path / f"{name}.csv", tmp_path / "m.toml"
    mapping.write_text(
        '[source]\nformat = "csv"\nencoding = "utf-8"\n[record]\nid = "ID"\n'
        '[identifiers]\nfamily_name = "SURNAME"\ngiven_name = "FORENAME"\n'
        'date_of_birth = { column = "DOB", formats = ["%d/%m/%Y"] }\n',
        encoding="utf-8",
    )
    out = tmp_path / f"{name}.json"
    code = run_cli(
        cli, "tessera-sdk", ["check", str(extract), "--mapping", str(mapping), "--json", str(out)]
    )
    assert code == 0
    return capsys.readouterr().out, json.loads(out.read_text(encoding="utf-8"))


def test_check_warns_without_changing_the_grade(tmp_path, capsys):
    spread = _spread(600)
    _extract(tmp_path / "heaped.csv", spread + _on(1, 1, 60))
    _extract(tmp_path / "plain.csv", spread + _spread(60, seed=9))
    printed, report = _check(tmp_path, "heaped", capsys)
    assert "warning" in printed and "fall on 1 January" in printed
    assert [(h["month"], h["day"]) for h in report["date_of_birth_heaping"]] == [(1, 1)]
    plain_printed, plain = _check(tmp_path, "plain", capsys)
    assert "warning" not in plain_printed
    assert plain["date_of_birth_heaping"] == []
    assert (report["grade"], report["grade_notes"]) == (plain["grade"], plain["grade_notes"])
