"""``tessera-sdk tokenise`` end to end: two conventions of the same people, missing keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from client_sdk.local_index import LocalIndex
from keys.batch import BatchReader
from keys.derive import Token
from keys.spec import default_spec
from tests.support.tokenise_world import DOMAIN, Org, make_orgs, tokenise

HOSPITAL_CSV = (
    "HOSP_NO,PATIENT NAME,D.O.B,GENDER,NHS NUMBER,POST CODE,AE_ATTENDANCES_12M\r\n"
    'H001,"O\'BRIEN, William",03/07/1984,Male,943 476 5919,ba1 1aa,2\r\n'
    'H002,"SMITH-JONES, Zoë",25/12/2001,Female,,SW1A2AA,0\r\n'
    'H003,"GARCÍA, José",01/02/1970,Male,943 476 5870,BS8  1TH,1\r\n'
    'H004,"McDONALD, Bill",15/06/1955,Male,,TA1 4DY,3\r\n'
    'H005,"UNKNOWN, Male",01/01/1900,Male,0000000000,,1\r\n'
)
HOSPITAL_MAPPING = """
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
[payload]
columns = ["AE_ATTENDANCES_12M"]
"""
GP_CSV = (
    "PATIENT_ID;FORENAME;SURNAME;DOB;SEX;NHS_NO;POSTCODE;LTC\n"
    "1;william;O'Brien;1984-07-03;M;9434765919;BA11AA;0\n"
    "2;Zoe;Smith-Jones;2001-12-25;F;;sw1a 2aa;1\n"
    "3;José;Garcia;1970-02-01;1;9434765870;BS8 1TH;2\n"
    "4;WILLIAM;McDonald;1955-06-15;Male;;TA1 4DY;0\n"
)
GP_MAPPING = """
[source]
format = "csv"
encoding = "utf-8"
delimiter = ";"
[record]
id = "PATIENT_ID"
[identifiers]
nhs_number = "NHS_NO"
given_name = "FORENAME"
family_name = "SURNAME"
date_of_birth = { column = "DOB", formats = ["%Y-%m-%d"] }
sex = "SEX"
postcode = "POSTCODE"
[payload]
columns = ["LTC"]
"""
PAIRS = {"H001": "1", "H002": "2", "H003": "3", "H004": "4"}


@pytest.fixture(scope="module")
def orgs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Org]:
    return make_orgs(tmp_path_factory.mktemp("orgs"), ["acute-trust", "gp-practice"])


def _tokens_by_local_id(org: Org, dataset: str, batch: Path) -> dict[str, tuple[Token | None, ...]]:
    chunks = list(BatchReader(batch).chunks())
    with LocalIndex.open(org.directory, dataset) as index:
        ids = index.lookup([r for c in chunks for r in c.refs])
    return {ids[r]: t for c in chunks for r, t in zip(c.refs, c.tokens, strict=True)}


def test_two_conventions_of_the_same_people_give_the_same_tokens(
    orgs: dict[str, Org], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hospital = tmp_path / "hospital.csv"
    hospital.write_bytes(HOSPITAL_CSV.encode("cp1252"))
    (tmp_path / "hospital.toml").write_text(HOSPITAL_MAPPING)
    gp = tmp_path / "gp.csv"
    gp.write_bytes(GP_CSV.encode("utf-8"))
    (tmp_path / "gp.toml").write_text(GP_MAPPING)
    h_out, g_out = tmp_path / "h.batch", tmp_path / "g.batch"
    code = tokenise(
        monkeypatch, orgs["acute-trust"], hospital, tmp_path / "hospital.toml", h_out,
        dataset="acute-pas",
    )  # fmt: skip
    assert code == 0
    code = tokenise(
        monkeypatch, orgs["gp-practice"], gp, tmp_path / "gp.toml", g_out, dataset="gp-list",
        extra=["--workers", "2", "--chunk-records", "2"],
    )  # fmt: skip
    assert code == 0
    h_tokens = _tokens_by_local_id(orgs["acute-trust"], "acute-pas", h_out)
    g_tokens = _tokens_by_local_id(orgs["gp-practice"], "gp-list", g_out)
    for h_id, g_id in PAIRS.items():
        assert h_tokens[h_id] == g_tokens[g_id], h_id
        assert sum(t is not None for t in h_tokens[h_id]) >= 4, h_id
    names = default_spec().key_names
    assert h_tokens["H001"][names.index("nhs_dob")] is not None
    assert h_tokens["H002"][names.index("nhs_dob")] is None  # no NHS number: no NHS keys
    # An unknown patient with placeholder NHS number and date of birth gets no token.
    assert all(t is None for t in h_tokens.get("H005", (None,)))
    # No two different people share a token.
    seen: dict[Token, str] = {}
    for g_id, tokens in g_tokens.items():
        for token in tokens:
            if token is not None:
                assert seen.setdefault(token, g_id) == g_id
    manifest = BatchReader(h_out).manifest
    assert manifest.domain == DOMAIN and manifest.key_version == "v1"
    assert manifest.dataset == "acute-pas"
    assert manifest.spec_hash == default_spec().content_hash
    assert manifest.payload_columns == ["AE_ATTENDANCES_12M"]
    assert manifest.quality, "the quality report travels with the batch"
    assert BatchReader(g_out).manifest.record_count == 4


def test_a_missing_domain_key_is_one_line_and_non_zero(
    orgs: dict[str, Org],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gp = tmp_path / "gp.csv"
    gp.write_text(GP_CSV)
    (tmp_path / "gp.toml").write_text(GP_MAPPING)
    out = tmp_path / "g.batch"
    monkeypatch.setenv("TESSERA_SDK_PASSPHRASE", "org test passphrase")
    from client_sdk.cli import cli
    from keys.cliutil import run_cli

    code = run_cli(
        cli,
        "tessera-sdk",
        ["tokenise", str(gp), "--mapping", str(tmp_path / "gp.toml"),
         "--dir", str(orgs["gp-practice"].directory), "--domain", "no-such-domain",
         "--dataset", "gp-list", "--out", str(out)],
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "no-such-domain" in lines[0]
    assert "Traceback" not in captured.err
    assert not out.exists()
    # A directory that is not an organisation's, and a spec that does not validate.
    code = tokenise(
        monkeypatch, Org("x", tmp_path / "nowhere"), gp, tmp_path / "gp.toml", out,
        dataset="gp-list",
    )  # fmt: skip
    assert code != 0 and len(capsys.readouterr().err.strip().splitlines()) == 1
    bad_spec = tmp_path / "bad.toml"
    bad_spec.write_text('name = "x"\n')
    code = tokenise(
        monkeypatch, orgs["gp-practice"], gp, tmp_path / "gp.toml", out, dataset="gp-list",
        extra=["--spec", str(bad_spec)],
    )  # fmt: skip
    assert code == 7 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists()


def test_tokenise_measures_the_days_an_extract_heaps_births_on_before_it_tokenises(
    orgs: dict[str, Org], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command, not only the Python API: on a day the extract itself heaps dates of
    birth on (1 January for people whose birthday nobody knew), the key that tells people
    apart by the day alone (``given_dob_postcode_sex``) is not formed; every other key is."""
    import random
    from datetime import date, timedelta

    rng = random.Random(3)
    rows = ["PATIENT_ID;FORENAME;SURNAME;DOB;SEX;NHS_NO;POSTCODE;LTC"]
    on_heaped_day: set[str] = set()
    for i in range(3000):
        heaped = i % 10 == 0  # a tenth recorded as 1 January of their year
        born = (
            date(rng.randrange(1950, 2005), 1, 1)
            if heaped
            else date(1950, 1, 2) + timedelta(days=rng.randrange(20_000))
        )
        rows.append(f"{i};Given{i % 97};Family{i};{born.isoformat()};M;;TA1 4DY;0")
        if (born.month, born.day) == (1, 1):  # a tenth, and a few born on it by chance
            on_heaped_day.add(str(i))
    data, mapping = tmp_path / "hostel.csv", tmp_path / "gp.toml"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    mapping.write_text(GP_MAPPING, encoding="utf-8")
    org = orgs["gp-practice"]
    out = tmp_path / "hostel.batch"
    assert tokenise(monkeypatch, org, data, mapping, out, dataset="hostel") == 0
    names = [k.name for k in default_spec().match_keys]
    day_key, both_names = (
        names.index("given_dob_postcode_sex"),
        names.index("given_family_dob_postcode"),
    )
    tokens = _tokens_by_local_id(org, "hostel", out)
    assert len(on_heaped_day) > 300
    for local_id, row in tokens.items():
        assert (row[day_key] is None) == (local_id in on_heaped_day), local_id
        assert row[both_names] is not None  # a key with both names keeps the date
