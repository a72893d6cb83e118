"""``tessera-sdk check``: summary, JSON, one-line errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from client_sdk.cli import cli
from keys.cliutil import run_cli

DATA = Path(__file__).parent.parent / "data"


def test_check_prints_summary_and_writes_json(tmp_path, capsys):
    out = tmp_path / "report.json"
    code = run_cli(
        cli,
        "tessera-sdk",
        [
            "check",
            str(DATA / "hospital_cp1252.csv"),
            "--mapping",
            str(DATA / "hospital_cp1252.toml"),
            "--json",
            str(out),
        ],
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "7 rows read, 7 used, 0 rejected" in printed
    assert "grade: Gold" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["grade"] == "Gold"
    assert report["records_used"] == 7
    for value in ("OBRIEN", "O'BRIEN", "9990079196", "999 007 9196", "ba11aa", "BA1 1AA"):
        assert value not in printed
        assert value not in out.read_text(encoding="utf-8")


def test_check_json_to_stdout(capsys):
    code = run_cli(
        cli,
        "tessera-sdk",
        ["check", str(DATA / "messy.csv"), "--mapping", str(DATA / "messy.toml"), "--json", "-"],
    )
    assert code == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["rows_rejected"] == 3
    assert "line 6: malformed row" in captured.err


def test_errors_are_one_line_with_exit_codes(tmp_path, capsys):
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        (DATA / "hospital_cp1252.toml").read_text().replace('"cp1252"', '"cp9999"'),
        encoding="utf-8",
    )
    code = run_cli(
        cli, "tessera-sdk", ["check", str(DATA / "hospital_cp1252.csv"), "--mapping", str(mapping)]
    )
    err = capsys.readouterr().err
    assert code == 11
    assert err.count("\n") == 1 and "unknown encoding" in err

    code = run_cli(
        cli,
        "tessera-sdk",
        ["check", str(DATA / "gp_utf8_bom.csv"), "--mapping", str(DATA / "hospital_cp1252.toml")],
    )
    err = capsys.readouterr().err
    assert code == 11 and "none of the mapped columns" in err and err.count("\n") == 1

    bad = tmp_path / "bad.toml"
    bad.write_text('[source]\nformat = "xls"\n[record]\n', encoding="utf-8")
    code = run_cli(cli, "tessera-sdk", ["check", str(DATA / "messy.csv"), "--mapping", str(bad)])
    err = capsys.readouterr().err
    assert code == 12
    assert "source.format" in err and "record.id" in err and err.count("\n") == 1
