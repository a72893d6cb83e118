"""Partial dates of birth: a year, or a year and month, alone keeps the evidence its parts
support and forms nothing that needs a full date (docs/normalisation.md, "Partial dates of
birth")."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk.cli import cli
from client_sdk.local_index import LocalIndex
from client_sdk.mapping import load_mapping
from client_sdk.normalise.dates import DateParser
from client_sdk.normalise.defect import Defect
from client_sdk.pipeline import iter_records
from client_sdk.quality import QualityCollector
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import Tokeniser
from keys.batch import BatchReader
from keys.cliutil import run_cli
from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec
from tests.support.evidence_cells import dob_agreement
from tests.support.tokenise_world import Org, fixed_params, make_orgs, tokenise

TODAY = date(2026, 12, 4)
FORMATS = ["%d/%m/%Y", "%Y-%m-%d", "%Y%m%d", "%d-%b-%y", "%d/%m/%y"]
SPEC_FILE = Path(__file__).parents[2] / "keys" / "specs" / "uk-health-probabilistic.toml"


@pytest.mark.parametrize(
    ("raw", "partial"),
    [
        ("00/00/1980", "1980"),
        ("0/0/1980", "1980"),
        ("00/03/1980", "1980-03"),
        ("0/3/1980", "1980-03"),
        ("1980-00-00", "1980"),
        ("1980-03-00", "1980-03"),
        ("19800000", "1980"),
        ("19801200", "1980-12"),
        ("00-Mar-80", "1980-03"),
        ("00/00/80", "1980"),
        ("00/00/27", "1927"),  # the pivot, as for a whole date: never in the future
        ("00/12/2026", "2026-12"),  # this month
        ("1980", "1980"),  # four digits alone: no format is that short
        ("00/00/1980 00:00:00", "1980"),  # a midnight after it, as after a whole date
    ],
)
def test_a_date_with_only_its_year_or_year_and_month_is_partial(raw, partial) -> None:
    dates = DateParser(FORMATS, today=TODAY)
    assert dates.check(raw) is Defect.PARTIAL
    assert dates.partial(raw) == partial
    assert dates.raw_digits(raw) is None  # a zero part means "not known", not a typo


@pytest.mark.parametrize(
    ("raw", "defect"),
    [
        ("05/00/1980", Defect.INVALID),  # a day without a month
        ("00/13/1980", Defect.INVALID),
        ("00/00/1850", Defect.INVALID),  # more than 125 years ago
        ("00/00/2027", Defect.INVALID),  # in the future
        ("00/01/2027", Defect.INVALID),
        ("1980-03", Defect.INVALID),  # not FHIR: no format of the mapping says where its month is
        ("0180", Defect.INVALID),
        ("00/00/0000", Defect.PLACEHOLDER),  # only zeros stay a placeholder
        ("0000", Defect.PLACEHOLDER),
        ("00/00/1901", Defect.PLACEHOLDER),  # the year and month of 1901-01-01, a default
        ("00/01/1901", Defect.PLACEHOLDER),
        ("UNKNOWN", Defect.PLACEHOLDER),
    ],
)
def test_what_is_not_a_partial_date(raw, defect) -> None:
    dates = DateParser(FORMATS, today=TODAY)
    assert dates.check(raw) is defect
    assert dates.partial(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected", "partial"),
    [
        ("1980", Defect.PARTIAL, "1980"),
        ("1980-03", Defect.PARTIAL, "1980-03"),
        ("1980-00", Defect.INVALID, None),
        ("1980-13", Defect.INVALID, None),
        ("2027-01", Defect.INVALID, None),
        ("1980-03-05", "1980-03-05", None),
    ],
)
def test_fhir_reduced_precision_dates(raw, expected, partial) -> None:
    dates = DateParser(["%Y-%m-%d"], today=TODAY, iso_year_month=True)
    assert dates.check(raw) == expected
    assert dates.partial(raw) == partial


@pytest.mark.parametrize(
    ("cells", "expected", "partial"),
    [
        (("0", "0", "1980"), Defect.PARTIAL, "1980"),
        (("", "", "1980"), Defect.PARTIAL, "1980"),
        (("00", "3", "1980"), Defect.PARTIAL, "1980-03"),
        (("", "Mar", "1980"), Defect.PARTIAL, "1980-03"),
        (("0.0", "0.0", "1980.0"), Defect.PARTIAL, "1980"),
        (("5", "", "1980"), Defect.INVALID, None),  # a day without a month
        (("0", "0", "80"), Defect.INVALID, None),  # a year cell has four digits
        (("0", "0", "0000"), Defect.PLACEHOLDER, None),
        (("UNKNOWN", "3", "1980"), Defect.PLACEHOLDER, None),
        (("1", "3", "1980"), "1980-03-01", None),
    ],
)
def test_a_partial_date_in_three_cells(cells, expected, partial) -> None:
    dates = DateParser(["%d/%m/%Y"], today=TODAY)
    assert dates.check_parts(*cells) == expected
    assert dates.partial_parts(*cells) == partial


_days = st.dates(min_value=date(1902, 1, 1), max_value=TODAY)
_formats = st.sampled_from(FORMATS)


def _written(day: date, fmt: str) -> str:
    return day.strftime(fmt)


@settings(max_examples=300, deadline=None)
@given(_days, _formats)
def test_a_full_dates_reading_is_unchanged(day, fmt) -> None:
    """A whole date is read as it was: its ISO form, never a partial one."""
    dates = DateParser([fmt], today=TODAY)
    written = _written(day, fmt)
    assert dates.check(written) == day.isoformat() or "%y" in fmt
    assert dates.partial(written) is None


_PARTIALS = {
    "%d/%m/%Y": lambda y, m: f"00/{m:02d}/{y}",
    "%Y-%m-%d": lambda y, m: f"{y}-{m:02d}-00",
    "%Y%m%d": lambda y, m: f"{y}{m:02d}00",
    "%d/%m/%y": lambda y, m: f"{'0' if m < 10 else '00'}/{m}/{y % 100:02d}",
}


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1902, max_value=TODAY.year),
    st.integers(min_value=0, max_value=12),
    st.sampled_from(sorted(_PARTIALS)),
)
def test_a_partial_date_never_yields_a_full_date(year, month, fmt) -> None:
    """A date written with a zero day (and perhaps month) in any format: PARTIAL, with its
    year (and month), never a date with a day."""
    if (year, month) > (TODAY.year, TODAY.month):
        return
    dates = DateParser(FORMATS, today=TODAY)
    written = _PARTIALS[fmt](year, month)
    result, partial = dates.check(written), dates.partial(written)
    assert result is Defect.PARTIAL
    expected = f"{year}" if month == 0 else f"{year}-{month:02d}"
    if fmt == "%d/%m/%y":  # a two-digit year pivots into the latest century it fits
        pivot = year if year > TODAY.year - 100 else year + 100
        pivot -= 100 * ((pivot, month) > (TODAY.year, TODAY.month))
        expected = f"{pivot}" + expected[4:]
    assert partial == expected


_PERSON = NormalisedRecord(
    line=2,
    local_id="L1",
    given_name="AMINA",
    given_name_key="AMINA",
    family_name="YUSUF",
    sex="F",
    postcode="B10 3JN",
)


def _record(**fields: Any) -> NormalisedRecord:
    return _PERSON._replace(**fields)


def _tokeniser(dataset: str) -> Tokeniser:
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    return Tokeniser(dataclasses.replace(fixed_params(dataset, ()), spec=spec))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1902, max_value=2025),
    st.integers(min_value=0, max_value=12),
    st.sampled_from([None, "4003056116"]),
)
def test_a_partial_date_forms_no_key_and_no_dob_block(year, month, nhs) -> None:
    """A partial date forms exactly the match keys a record without a date forms, no
    ``dob`` block, and the ``postcode_year`` block a full date of its year forms."""
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    tokeniser = _tokeniser("gp-a")
    partial = f"{year}" if month == 0 else f"{year}-{month:02d}"
    with_partial = _record(nhs_number=nhs, date_of_birth_partial=partial)
    without = _record(nhs_number=nhs)
    full = _record(nhs_number=nhs, date_of_birth=f"{year}-{max(month, 1):02d}-15")
    assert tokeniser.tokens(with_partial) == tokeniser.tokens(without)
    names = [b.name for b in spec.blocking_keys]
    blocks = dict(zip(names, tokeniser.evidence(with_partial)[0], strict=True))
    full_blocks = dict(zip(names, tokeniser.evidence(full)[0], strict=True))
    assert blocks["dob"] is None
    assert blocks["postcode_year"] == full_blocks["postcode_year"] is not None
    assert blocks["names_phonetic"] == full_blocks["names_phonetic"]
    # the column-wise path gives the row-wise path's blocks and tokens
    row = tokeniser.row(with_partial)
    chunk = tokeniser.chunk_of_rows([row])
    assert chunk.tokens[0] == tokeniser.tokens(with_partial)
    assert chunk.evidence is not None and chunk.evidence.blocks[0] == tuple(blocks.values())


@pytest.mark.parametrize(
    ("full", "partial", "level"),
    [
        ("1980-03-17", "1980", "assigned_year"),
        ("1980-03-17", "1980-07", "assigned_year"),
        ("1980-03-17", "1980-03", "year_month"),
        ("1981-03-17", "1980", "disagree"),
        ("1980-03-17", None, "disagree"),
    ],
)
def test_a_partial_date_agrees_with_a_full_date_of_its_year_inside_postcode_year(
    full, partial, level
) -> None:
    """The practice knows the date; the hospital only the year (and month): the pair
    shares the ``postcode_year`` block and agrees there at ``assigned_year`` (or
    ``year_month``), the levels a 1 January assigned birthday gives, and nowhere a day
    is needed."""
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    gp, hospital = _tokeniser("gp-a"), _tokeniser("hospital-b")
    practice = gp.evidence(_record(date_of_birth=full))
    if partial is None:  # no date at all: not in the block
        blocks = hospital.evidence(_record())[0]
        assert blocks[[b.name for b in spec.blocking_keys].index("postcode_year")] is None
        return
    record = _record(date_of_birth_partial=partial)
    assert dob_agreement(spec, "names_phonetic", practice, hospital.evidence(record)) == level
    if level != "disagree":
        assert dob_agreement(spec, "postcode_year", practice, hospital.evidence(record)) == level
    # its comparison tokens: the year (and month) levels only
    cells = hospital.evidence(record)[1]
    for column, cell in zip(spec.evidence_columns, cells, strict=True):
        comparison = spec.comparisons[column.comparison]
        if comparison.field == "date_of_birth" and cell:
            kept = {"assigned_year"} | ({"year_month"} if len(partial) == 7 else set())
            assert comparison.levels[column.level] in kept


CSV = (
    "PATIENT_ID,FORENAME,SURNAME,DOB,SEX,NHS_NO,POSTCODE\n"
    "1,Amina,Yusuf,00/00/1980,F,,B10 3JN\n"
    "2,Amina,Yusuf,17/03/1980,F,,B10 3JN\n"
    "3,Omar,Hassan,00/05/1992,M,,B10 3JN\n"
    "4,Omar,Hassan,1992,M,,B10 3JN\n"
    "5,Sara,Ali,31/02/1990,F,,B10 3JN\n"
    "6,Sara,Ali,00/00/0000,F,,B10 3JN\n"
)
MAPPING = """
[source]
format = "csv"
encoding = "utf-8"
[record]
id = "PATIENT_ID"
[identifiers]
nhs_number = "NHS_NO"
given_name = "FORENAME"
family_name = "SURNAME"
date_of_birth = { column = "DOB", formats = ["%d/%m/%Y"] }
sex = "SEX"
postcode = "POSTCODE"
"""


def _extract(tmp_path: Path) -> tuple[Path, Path]:
    data, mapping = tmp_path / "extract.csv", tmp_path / "extract.toml"
    data.write_text(CSV, encoding="utf-8")
    mapping.write_text(MAPPING, encoding="utf-8")
    return data, mapping


def test_the_pipeline_reads_partial_dates_and_the_report_counts_them(tmp_path: Path) -> None:
    data, mapping = _extract(tmp_path)
    quality = QualityCollector()
    records = {
        r.local_id: r
        for r in iter_records(data, load_mapping(mapping), report=quality, today=TODAY)
    }
    assert [(r.date_of_birth, r.date_of_birth_partial) for r in records.values()] == [
        (None, "1980"),
        ("1980-03-17", None),
        (None, "1992-05"),
        (None, "1992"),
        (None, None),
        (None, None),
    ]
    dob = quality.report().field("date_of_birth")
    assert (dob.valid, dob.partial, dob.invalid, dob.placeholder) == (1, 3, 1, 1)
    assert dob.validity == 0.5  # partial dates are not errors
    assert dob.completeness == round(1 / 6, 6)  # nor complete: only full dates are


@pytest.fixture(scope="module")
def orgs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Org]:
    return make_orgs(tmp_path_factory.mktemp("orgs"), ["gp-practice"])


def test_check_and_tokenise_of_an_extract_with_partial_dates(
    orgs: dict[str, Org],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``tessera-sdk check`` counts them; ``tessera-sdk tokenise`` under the probabilistic
    spec forms no key and no ``dob`` block on them, and the ``postcode_year`` block of
    their year."""
    data, mapping = _extract(tmp_path)
    report_path = tmp_path / "report.json"
    args = ["check", str(data), "--mapping", str(mapping), "--json", str(report_path)]
    assert run_cli(cli, "tessera-sdk", args) == 0
    printed = capsys.readouterr().out
    assert "dates of birth with only a year, or a year and month: 3" in printed
    report = json.loads(report_path.read_text(encoding="utf-8"))
    (dob,) = [f for f in report["fields"] if f["field"] == "date_of_birth"]
    assert (dob["valid"], dob["partial"], dob["invalid"]) == (1, 3, 1)
    assert "1980" not in printed and "1980" not in report_path.read_text(encoding="utf-8")

    org, out = orgs["gp-practice"], tmp_path / "extract.batch"
    extra = ["--spec", str(SPEC_FILE), "--workers", "1"]
    assert tokenise(monkeypatch, org, data, mapping, out, dataset="list", extra=extra) == 0
    reader = BatchReader(out)
    assert reader.manifest.quality["fields"][4]["partial"] == 3
    chunks = list(reader.chunks())
    with LocalIndex.open(org.directory, "list") as index:
        ids = index.lookup([r for c in chunks for r in c.refs])
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    dob_keys = [
        i
        for i, key in enumerate(spec.match_keys)
        if any(f.field == "date_of_birth" for f in key.leaves)
    ]
    blocks = [b.name for b in spec.blocking_keys]
    tokens, block_of = {}, {}
    for chunk in chunks:
        assert chunk.evidence is not None
        for ref, record_tokens, record_blocks in zip(
            chunk.refs, chunk.tokens, chunk.evidence.blocks, strict=True
        ):
            tokens[ids[ref]] = record_tokens
            block_of[ids[ref]] = dict(zip(blocks, record_blocks, strict=True))
    for local_id in ("1", "3", "4"):  # the partial dates
        assert all(tokens[local_id][i] is None for i in dob_keys)
        assert block_of[local_id]["dob"] is None
        assert block_of[local_id]["postcode_year"] is not None
    assert block_of["1"]["postcode_year"] == block_of["2"]["postcode_year"]  # both 1980
    assert block_of["3"]["postcode_year"] == block_of["4"]["postcode_year"]  # both 1992
    for local_id in ("5", "6"):  # invalid, placeholder: no year either
        assert block_of[local_id]["postcode_year"] is None
