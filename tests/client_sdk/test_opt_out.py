"""Opt-outs at the source: the permitted file, Type 1 codes, the NHS number status column,
and the research-restricted flag each record carries into its batch."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.errors import InputError, MappingError
from client_sdk.job import load_job
from client_sdk.local_index import LocalIndex
from client_sdk.mapping import TYPE1_DISSENT_CODES, parse_mapping
from client_sdk.opt_out import PermittedList, SourceOptOuts, load_permitted, split_codes
from client_sdk.pipeline import iter_records, record_blocks
from client_sdk.quality import QualityCollector
from client_sdk.tokenise_batch import write_batch
from keys.batch import BatchReader
from keys.chunk import RESEARCH_RESTRICTED
from tests.support.tokenise_world import fixed_params

TODAY = date(2026, 12, 3)


def _nhs(n: int) -> str:
    """The ``n``-th valid NHS number from 400 000 000 up (a test number range)."""
    while True:
        digits = f"{400_000_000 + n:09d}"
        check = 11 - sum(int(d) * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check != 10:
            return digits + str(check % 11)
        n += 1_000_003


NUMBERS = [_nhs(i * 7) for i in range(12)]


def test_the_default_type1_code_is_the_snomed_dissent_code() -> None:
    assert TYPE1_DISSENT_CODES == ("827241000000103",)


def test_a_plain_permitted_file_with_trailing_commas(tmp_path: Path) -> None:
    path = tmp_path / "permitted.dat"
    path.write_text("".join(f"{n},\r\n" for n in NUMBERS[:5]) + "\n")
    permitted = load_permitted(path, checked=date(2026, 12, 1), today=TODAY)
    assert permitted.numbers == frozenset(NUMBERS[:5])
    assert permitted.checked == date(2026, 12, 1)
    assert NUMBERS[0] not in repr(permitted)


def test_a_csv_permitted_file_gives_its_earliest_check_date(tmp_path: Path) -> None:
    path = tmp_path / "permitted.csv"
    path.write_text(
        "NHS Number,Date Checked\n"
        f"{NUMBERS[0][:3]} {NUMBERS[0][3:6]} {NUMBERS[0][6:]},2026-12-02\n"
        f"{NUMBERS[1]},01/12/2026\n"
    )
    permitted = load_permitted(path, today=TODAY)
    assert permitted.numbers == {NUMBERS[0], NUMBERS[1]}
    assert permitted.checked == date(2026, 12, 1)
    # The option wins over the file.
    assert load_permitted(path, checked=date(2026, 12, 3), today=TODAY).checked == TODAY


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{NUMBERS[0]}\n1234567890\n", "line 2: not a valid NHS number"),
        ("\n\n", "holds no NHS numbers"),
        (f"{NUMBERS[0]}\n", "gives no check date"),
        (
            f"nhs_number,check_date\n{NUMBERS[0]},yesterday\n",
            "line 2: the check date is not a date",
        ),
        (f"nhs_number,check_date\n{NUMBERS[0]},2027-01-01\n", "is in the future"),
    ],
)
def test_a_bad_permitted_file_is_refused_naming_the_line_never_the_value(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "permitted.dat"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as caught:
        load_permitted(path, today=TODAY)
    assert "1234567890" not in str(caught.value) and NUMBERS[0] not in str(caught.value)


def test_a_missing_permitted_file_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the permitted file"):
        load_permitted(tmp_path / "absent.dat", checked=TODAY, today=TODAY)


_codes = st.sampled_from(["827241000000103", "827261000000102", "9Nu0.", "9Nu0", "X", ""])


@given(
    st.one_of(st.none(), st.sampled_from(NUMBERS)),
    st.lists(_codes, max_size=4),
    st.booleans(),
    st.sampled_from([" ; ", ",", "|", " "]),
)
def test_restricted_exactly_when_not_permitted_or_type1_coded(
    number: str | None, cell_codes: list[str], with_permitted: bool, separator: str
) -> None:
    permitted = PermittedList(frozenset(NUMBERS[:6]), TODAY) if with_permitted else None
    opt_outs = SourceOptOuts(permitted, frozenset({"827241000000103", "9Nu0"}))
    cell = separator.join(cell_codes)
    not_cleared = with_permitted and (number is None or number not in NUMBERS[:6])
    coded = any(c.rstrip(".") in {"827241000000103", "9Nu0"} for c in cell_codes)
    assert opt_outs.is_restricted(number, cell) == (not_cleared or coded)
    assert split_codes(cell) == [c.rstrip(".") for c in cell_codes if c]


_MAPPING = {
    "source": {"format": "csv"},
    "record": {"id": "ID"},
    "identifiers": {
        "nhs_number": "NHS",
        "nhs_number_status": "NHS_STATUS",
        "family_name": "SURNAME",
    },
    "payload": {"columns": ["AE"]},
    "opt_out": {"type1_column": "CODES"},
}


def _extract(tmp_path: Path) -> Path:
    rows = [
        ("A1", NUMBERS[0], "01", "SMITH", "1", ""),
        ("A2", NUMBERS[1], "04", "JONES", "2", ""),  # unverified: no NHS number key
        ("A3", NUMBERS[2], "1", "PATEL", "0", "827241000000103"),  # Type 1
        ("A4", NUMBERS[3], "", "NGUYEN", "3", "827261000000102"),  # withdrawn: usable
        ("A5", NUMBERS[4], "5", "WOJCIK", "1", ""),  # "5" is 05: unverified
        ("A6", NUMBERS[9], "02", "OBRIEN", "0", ""),  # not in the permitted file
    ]
    path = tmp_path / "gp.csv"
    lines = ["ID,NHS,NHS_STATUS,SURNAME,AE,CODES"] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_status_column_drops_unverified_numbers_and_the_report_counts_them(
    tmp_path: Path,
) -> None:
    mapping = parse_mapping(_MAPPING)
    collector = QualityCollector()
    records = list(iter_records(_extract(tmp_path), mapping, report=collector, today=TODAY))
    numbers = {r.local_id: r.nhs_number for r in records}
    assert numbers == {
        "A1": NUMBERS[0], "A2": None, "A3": NUMBERS[2], "A4": NUMBERS[3], "A5": None,
        "A6": NUMBERS[9],
    }  # fmt: skip
    report = collector.report()
    assert report.nhs_numbers_unverified == 2
    assert report.field("nhs_number").missing == 2
    # Neither check column leaves: not in the payload, not in the report.
    assert [r.payload for r in records] == [("1",), ("2",), ("0",), ("3",), ("1",), ("0",)]
    assert "827241000000103" not in report.model_dump_json()


@pytest.mark.parametrize("workers", [1, 2])
def test_records_are_flagged_and_the_batch_carries_only_the_flag(
    tmp_path: Path, workers: int
) -> None:
    mapping = parse_mapping(_MAPPING)
    permitted = PermittedList(frozenset(NUMBERS[:6]), date(2026, 12, 1))
    opt_outs = SourceOptOuts.of(mapping, permitted)
    assert opt_outs is not None and opt_outs.checked == date(2026, 12, 1)
    records = list(iter_records(_extract(tmp_path), mapping, today=TODAY, opt_outs=opt_outs))
    # A2 and A5: no usable NHS number, so the check cannot clear them; A3 Type 1; A6 absent.
    assert {r.local_id for r in records if r.restricted} == {"A2", "A3", "A5", "A6"}
    collector = QualityCollector()
    blocks = record_blocks(
        _extract(tmp_path), mapping, report=collector, today=TODAY, size=4, opt_outs=opt_outs
    )
    params = dataclasses.replace(fixed_params("gp-a", ("AE",)), opt_out_flags=True)
    out = tmp_path / "gp.tsb"
    (tmp_path / "org").mkdir()
    with LocalIndex.open(tmp_path / "org", "gp-a") as index:
        summary = write_batch(
            blocks, params, out=out, index=index, opt_out_checked=opt_outs.checked,
            workers=workers,
        )  # fmt: skip
        refs = [r for c in BatchReader(out).chunks() for r in c.refs]
        local = index.lookup(refs)
    reader = BatchReader(out)
    assert summary.manifest.opt_out_checked == date(2026, 12, 1)
    assert summary.restricted == 4
    assert reader.manifest.opt_out_checked == date(2026, 12, 1)
    flags = b"".join(c.flags or b"" for c in reader.chunks())
    assert len(flags) == len(refs) == 6
    flagged = {local[r] for r, f in zip(refs, flags, strict=True) if f & RESEARCH_RESTRICTED}
    assert flagged == {"A2", "A3", "A5", "A6"}
    # No permitted file and no Type 1 column: no flags at all, the old chunk format.
    plain = {k: v for k, v in _MAPPING.items() if k != "opt_out"}
    assert SourceOptOuts.of(parse_mapping(plain), None) is None


def test_type1_codes_alone_need_no_permitted_file(tmp_path: Path) -> None:
    mapping = parse_mapping(
        {**_MAPPING, "opt_out": {"type1_column": "CODES", "type1_codes": ["827241000000103"]}}
    )
    opt_outs = SourceOptOuts.of(mapping, None)
    assert opt_outs is not None and opt_outs.checked is None
    records = iter_records(_extract(tmp_path), mapping, today=TODAY, opt_outs=opt_outs)
    assert {r.local_id for r in records if r.restricted} == {"A3"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"identifiers": {"nhs_number_status": "NHS_STATUS", "family_name": "SURNAME"}},
         "no nhs_number is mapped"),
        ({"opt_out": {"type1_column": "AE"}}, "'AE' is already an identifier, the id or payload"),
        ({"opt_out": {"type1_column": "NHS_STATUS"}}, "the same column as nhs_number_status"),
        ({"opt_out": {"type1_column": "CODES", "type1_codes": []}}, "type1_codes"),
    ],
)  # fmt: skip
def test_check_columns_are_their_own_columns(change: dict[str, object], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        parse_mapping({**_MAPPING, **change})


def test_fhir_mappings_refuse_the_csv_check_columns() -> None:
    with pytest.raises(MappingError) as caught:
        parse_mapping(
            {
                "source": {"format": "fhir"},
                "record": {"id": "id"},
                "identifiers": {"nhs_number_status": "X"},
                "opt_out": {"type1_column": "Y"},
            }
        )
    text = str(caught.value)
    assert "FHIR carries the status" in text and "CSV only" in text


def test_a_job_file_names_the_permitted_file_relative_to_itself(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text(
        'org_dir = "org"\n[extract]\ninput = "gp.csv"\nmapping = "gp.toml"\n'
        'permitted = "permitted.dat"\nopt_out_checked = 2026-12-01\n'
        '[tokenise]\ndomain = "d"\ndataset = "reg"\n'
    )
    loaded = load_job(job)
    assert loaded.extract.permitted == tmp_path.resolve() / "permitted.dat"
    assert loaded.extract.opt_out_checked == date(2026, 12, 1)


def test_fhir_numbers_left_out_for_their_status_are_counted_too(tmp_path: Path) -> None:
    def patient(i: int, code: str) -> str:
        status = {
            "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
            "valueCodeableConcept": {"coding": [{"code": code}]},
        }
        ident = {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NUMBERS[i]}
        ident["extension"] = [status]  # type: ignore[assignment]
        return json.dumps({"resourceType": "Patient", "id": f"p{i}", "identifier": [ident]})

    path = tmp_path / "patients.ndjson"
    path.write_text("\n".join(patient(i, c) for i, c in enumerate(["01", "04", "07", "02"])))
    mapping = parse_mapping({"source": {"format": "fhir"}, "record": {"id": "id"}})
    collector = QualityCollector()
    records = list(iter_records(path, mapping, report=collector, today=TODAY))
    assert [r.nhs_number for r in records] == [NUMBERS[0], None, None, NUMBERS[3]]
    assert collector.report().nhs_numbers_unverified == 2
    # A permitted file applies to FHIR input too: the unverified cannot be cleared.
    opt_outs = SourceOptOuts.of(mapping, PermittedList(frozenset(NUMBERS), TODAY))
    marked = iter_records(path, mapping, today=TODAY, opt_outs=opt_outs)
    assert [r.restricted for r in marked] == [False, True, True, False]
