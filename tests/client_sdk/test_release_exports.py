"""Release exports: spreadsheet formula neutralising, the risk score and rules files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from client_sdk.cli.release import parse_where
from client_sdk.errors import InputError
from client_sdk.export import neutralise, write_table
from client_sdk.risk import load_rules, score_patients

RULES = Path(__file__).resolve().parents[2] / "client_sdk" / "data" / "risk_rules.toml"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("-3", "-3"),
        ("+4.5", "+4.5"),
        ("18-44", "18-44"),
        (None, ""),
    ],
)
def test_neutralise(value, shown):
    assert neutralise(value) == shown


def test_csv_export_neutralises_text_and_is_private(tmp_path):
    out = tmp_path / "t.csv"
    write_table(out, ["=col", "n"], [["=1+1", 3], [None, -2]])
    with out.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["'=col", "n"], ["'=1+1", "3"], ["", "-2"]]
    assert out.stat().st_mode & 0o777 == 0o600


def test_parse_where():
    p = parse_where("gp/reg.LTC_COUNT ge 2")
    assert (p.field, p.op, p.value) == ("gp/reg.LTC_COUNT", "ge", "2")
    assert parse_where("t/pas.AE in 3, 4,5").value == ["3", "4", "5"]
    assert parse_where("t/pas.AE present").value is None
    with pytest.raises(Exception, match="FIELD OP"):
        parse_where("nonsense")


def test_shipped_rules_score_and_rank(tmp_path):
    rules = load_rules(RULES)
    columns = [
        "local_id", "dataset", "gp/reg.LTC_COUNT", "gp/reg.FRAILTY_INDEX",
        "trust/pas.AE_ATTENDANCES_12M", "trust/pas.EMERGENCY_ADMISSIONS_12M",
    ]  # fmt: skip
    rows = [
        dict(zip(columns, values, strict=True))
        for values in (
            ["a", "reg", "0", "", "", ""],  # nothing linked, no risk
            ["b", "reg", "4", "0.30", "2", "1"],  # 2 + 2 + 2 + 3 = 9
            ["c", "reg", "1", "0.14", "9", ""],  # 0 + 1 + 5 (capped) = 6
            ["d", "reg", "2", "", "1;2", "0"],  # two records: 3 A&E -> 3, +1 LTC = 4
        )
    ]
    scored = score_patients(rules, columns, rows)
    assert [(s.local_id, s.score, s.level) for s in scored] == [
        ("b", 9, "high"),
        ("c", 6, "raised"),
        ("d", 4, "raised"),
    ]
    assert scored[0].reasons[0] == "Emergency admissions (12 months): 3"


def test_bad_rules_are_reported_at_once(tmp_path):
    bad = tmp_path / "rules.toml"
    bad.write_text('[[rule]]\nname = "x"\nfield = "F"\n[[rule]]\nname = "y"\n')
    with pytest.raises(InputError) as err:
        load_rules(bad)
    assert "per_unit or bands" in str(err.value) and "field" in str(err.value)
    rules = load_rules(RULES)
    with pytest.raises(InputError, match="no column"):
        score_patients(rules, ["local_id", "x"], [])
