"""The FHIR reader on the shapes real exports take (EMIS, Cerner, Epic, HAPI, NHS UK Core).

Every resource here is synthetic: made-up people, NHS numbers from the 999 test range.
"""

from __future__ import annotations

import gc
import json
import logging
import tracemalloc
from datetime import date
from typing import Any

import pytest

from client_sdk.errors import InputError
from client_sdk.mapping import FHIR_NHS_NUMBER_SYSTEM, parse_mapping
from client_sdk.pipeline import iter_records
from client_sdk.quality import QualityCollector
from client_sdk.readers.fhir import FhirFields, patient_values, read_fhir

TODAY = date(2026, 11, 24)
MRN = "https://trust.example.nhs.uk/Id/mrn"
UKCORE_STATUS = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
)
CARECONNECT_STATUS = (
    "https://fhir.hl7.org.uk/STU3/StructureDefinition/"
    "Extension-CareConnect-NHSNumberVerificationStatus-1"
)
FIELDS = FhirFields(
    id_system=None,
    nhs_system=FHIR_NHS_NUMBER_SYSTEM,
    other_system=MRN,
    names=True,
    birth_date=True,
    gender=True,
    postcode=True,
    address_line=True,
    payload=(),
)
LOCAL_ID, NHS, GIVEN, FAMILY, TEXT, DOB, GENDER, POSTCODE, LINE, OTHER = (
    0,
    1,
    2,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
)


def nhs_number(stem: int) -> str:
    """A valid NHS number from the 999 test range (stem: 0..999999)."""
    digits = f"999{stem:06d}"
    total = sum(int(d) * (10 - i) for i, d in enumerate(digits))
    check = 11 - total % 11
    if check == 10:
        return nhs_number(stem + 1)
    return digits + str(0 if check == 11 else check)


def values(resource, fields=FIELDS):
    return patient_values(resource, fields, today=TODAY)


def patient(pid="p1", **elements):
    return {"resourceType": "Patient", "id": pid, **elements}


def status(code, url=UKCORE_STATUS):
    system = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
    return [{"url": url, "valueCodeableConcept": {"coding": [{"system": system, "code": code}]}}]


def read(path, fields=FIELDS):
    problems: list[Any] = []
    skipped: list[object] = []
    rows = list(
        read_fhir(
            path,
            fields,
            on_problem=lambda *p: problems.append(p),
            on_skip=skipped.append,
            today=TODAY,
        )
    )
    return rows, problems, skipped


FHIR_MAPPING = parse_mapping(
    {
        "source": {"format": "fhir"},
        "record": {"id": "id"},
        "identifiers": {"other_id": {"system": MRN}},
    }
)


def normalise(tmp_path, resources):
    path = tmp_path / "p.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")
    collector = QualityCollector()
    records = list(iter_records(path, FHIR_MAPPING, report=collector, today=TODAY))
    report = collector.report()
    return records, {f.field: f for f in report.fields}, report


# --- names -------------------------------------------------------------------------------


def test_the_current_official_name_wins():
    resource = patient(
        name=[
            {"use": "official", "family": "Jones", "given": ["Ann"], "period": {"end": "2010"}},
            {"use": "maiden", "family": "Green", "given": ["Ann"]},
            {"use": "old", "family": "Brown", "given": ["Ann"]},
            {"use": "nickname", "given": ["Annie"]},
            {"use": "usual", "family": "Smith", "given": ["Annie"]},
            {"use": "official", "family": "Smith", "given": ["Ann", "Marie"], "prefix": ["Mrs"]},
        ]
    )
    row = values(resource)
    assert (row[GIVEN], row[FAMILY], row[TEXT]) == ("Ann Marie", "Smith", "")


def test_an_ended_official_name_gives_way_to_the_usual_one():
    resource = patient(
        name=[
            {
                "use": "official",
                "family": "Jones",
                "given": ["Ann"],
                "period": {"start": "1990-01-01", "end": "2019-06-30T00:00:00Z"},
            },
            {"use": "usual", "family": "Smith", "given": ["Ann"]},
        ]
    )
    assert values(resource)[FAMILY] == "Smith"


def test_of_two_current_official_names_the_latest_started_wins():
    resource = patient(
        name=[
            {"use": "official", "family": "Jones", "given": ["Ann"]},
            {"use": "official", "family": "Smith", "given": ["Ann"], "period": {"start": "2019"}},
            {"use": "official", "family": "Later", "given": ["Ann"], "period": {"start": "2099"}},
        ]
    )
    assert values(resource)[FAMILY] == "Smith"


def test_a_period_ending_this_year_is_still_current():
    resource = patient(
        name=[
            {"use": "usual", "family": "Usual", "given": ["A"]},
            {"use": "official", "family": "Current", "given": ["A"], "period": {"end": "2026"}},
        ]
    )
    assert values(resource)[FAMILY] == "Current"


def test_only_old_names_are_used_rather_than_none():
    resource = patient(
        name=[
            {"use": "maiden", "family": "Green", "given": ["Ann"]},
            {"use": "old", "family": "Brown", "given": ["Ann"]},
        ]
    )
    assert values(resource)[FAMILY] == "Brown"


def test_name_text_only_and_empty_names():
    resource = patient(
        name=[
            {"use": "official", "extension": [{"url": "x", "valueCode": "masked"}]},
            {"use": "usual", "text": "Dr Maria de la Cruz"},
        ]
    )
    row = values(resource)
    assert (row[GIVEN], row[FAMILY], row[TEXT]) == ("", "", "Dr Maria de la Cruz")


def test_given_with_nulls_and_a_dstu2_family_list():
    resource = patient(
        name=[{"family": ["de", "Souza"], "given": ["Ana", None, "Luísa"], "_given": [None, {}]}]
    )
    row = values(resource)
    assert (row[GIVEN], row[FAMILY]) == ("Ana Luísa", "de Souza")


def test_name_text_only_normalises_through_the_pipeline(tmp_path):
    records, fields, _ = normalise(tmp_path, [patient(name=[{"text": "SMITH, John Paul"}])])
    (record,) = records
    assert (record.given_name, record.middle_names, record.family_name) == ("JOHN", "PAUL", "SMITH")


# --- identifiers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "system",
    [
        "https://fhir.nhs.uk/Id/nhs-number",
        "http://fhir.nhs.uk/Id/nhs-number",
        "http://fhir.nhs.net/Id/nhs-number",
        "urn:oid:2.16.840.1.113883.2.1.4.1",
    ],
)
def test_nhs_number_systems_old_and_new(system):
    resource = patient(
        identifier=[
            {"system": MRN, "value": "RX1234567", "type": {"text": "MRN"}},
            {"system": system, "value": nhs_number(1), "extension": status("01")},
        ]
    )
    row = values(resource)
    assert (row[NHS], row[OTHER]) == (nhs_number(1), "RX1234567")


def test_a_mapping_naming_another_system_reads_only_that_system():
    fields = FhirFields(**{**_as_dict(FIELDS), "nhs_system": "https://example.org/Id/nhs"})
    resource = patient(
        identifier=[
            {"system": FHIR_NHS_NUMBER_SYSTEM, "value": nhs_number(1)},
            {"system": "https://example.org/Id/nhs", "value": nhs_number(2)},
        ]
    )
    assert values(resource, fields)[NHS] == nhs_number(2)


def _as_dict(fields):
    return {name: getattr(fields, name) for name in FhirFields.__slots__}


@pytest.mark.parametrize("code", ["01", "02", "03", "06", "08"])
def test_verified_and_not_yet_traced_nhs_numbers_are_used(code):
    resource = patient(
        identifier=[
            {"system": FHIR_NHS_NUMBER_SYSTEM, "value": nhs_number(3), "extension": status(code)}
        ]
    )
    assert values(resource)[NHS] == nhs_number(3)


@pytest.mark.parametrize("url", [UKCORE_STATUS, CARECONNECT_STATUS])
@pytest.mark.parametrize("code", ["04", "05", "07"])
def test_an_nhs_number_whose_trace_failed_is_not_used(code, url):
    resource = patient(
        identifier=[
            {
                "system": FHIR_NHS_NUMBER_SYSTEM,
                "value": nhs_number(3),
                "extension": status(code, url),
            }
        ]
    )
    assert values(resource)[NHS] == ""


def test_the_verified_current_nhs_number_is_preferred():
    resource = patient(
        identifier=[
            {"system": FHIR_NHS_NUMBER_SYSTEM, "value": nhs_number(4), "use": "old"},
            {"system": FHIR_NHS_NUMBER_SYSTEM, "value": nhs_number(5), "extension": status("04")},
            {"system": FHIR_NHS_NUMBER_SYSTEM, "value": nhs_number(6), "extension": status("02")},
            {"system": FHIR_NHS_NUMBER_SYSTEM, "value": nhs_number(7), "extension": status("01")},
            {"system": MRN, "value": "OLD-1", "period": {"end": "2015-01-01"}},
            {"system": MRN, "value": "NEW-2"},
        ]
    )
    row = values(resource)
    assert (row[NHS], row[OTHER]) == (nhs_number(7), "NEW-2")


def test_an_nhs_number_written_as_a_json_number_or_with_spaces(tmp_path):
    spaced = f"{nhs_number(8)[:3]} {nhs_number(8)[3:6]} {nhs_number(8)[6:]}"
    records, _, _ = normalise(
        tmp_path,
        [
            patient(
                "a", identifier=[{"system": FHIR_NHS_NUMBER_SYSTEM, "value": int(nhs_number(9))}]
            ),
            patient("b", identifier=[{"system": FHIR_NHS_NUMBER_SYSTEM, "value": spaced}]),
        ],
    )
    assert [r.nhs_number for r in records] == [nhs_number(9), nhs_number(8)]


def test_trace_failures_are_counted_in_the_log_without_values(tmp_path, caplog):
    path = tmp_path / "p.ndjson"
    ident = {"system": FHIR_NHS_NUMBER_SYSTEM, "value": nhs_number(3), "extension": status("05")}
    path.write_text(json.dumps(patient(identifier=[ident])) + "\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="client_sdk.readers.fhir"):
        (row,) = read(path)[0]
    assert row[1][NHS] == ""
    assert "1 NHS numbers not used" in caplog.text
    assert nhs_number(3) not in caplog.text


def test_the_record_id_from_an_identifier_system(tmp_path):
    fields = FhirFields(**{**_as_dict(FIELDS), "id_system": MRN, "other_system": None})
    resource = patient(identifier=[{"system": MRN, "value": "RX1"}])
    assert values(resource, fields)[LOCAL_ID] == "RX1"


# --- birth date and gender ---------------------------------------------------------------


def test_partial_birth_dates_are_partial_not_guessed(tmp_path):
    records, fields, report = normalise(
        tmp_path,
        [
            patient("a", birthDate="1980"),
            patient("b", birthDate="1980-02"),
            patient("c", _birthDate={"extension": [{"url": "x", "valueCode": "unknown"}]}),
            patient("d", birthDate="1980-02-01"),
        ],
    )
    assert [r.date_of_birth for r in records] == [None, None, None, "1980-02-01"]
    assert [r.date_of_birth_partial for r in records] == ["1980", "1980-02", None, None]
    dob = fields["date_of_birth"]
    assert (dob.valid, dob.partial, dob.invalid, dob.missing) == (1, 2, 0, 1)
    assert not [p for p in report.value_problems if p.column == "birthDate"]


def test_gender_unknown_other_and_missing(tmp_path):
    records, fields, _ = normalise(
        tmp_path,
        [
            patient("a", gender="unknown"),
            patient("b", gender="other"),
            patient("c"),
            patient("d", gender="female"),
        ],
    )
    assert [r.sex for r in records] == [None, None, None, "F"]
    sex = fields["sex"]
    assert (sex.valid, sex.missing, sex.valid + sex.missing + sex.invalid + sex.placeholder) == (
        1,
        1,
        4,
    )


# --- addresses ---------------------------------------------------------------------------


def test_the_current_home_address_wins():
    resource = patient(
        address=[
            {"use": "home", "postalCode": "BS1 1AA", "period": {"end": "2020-03-01"}},
            {"use": "old", "postalCode": "BS2 2AA", "line": ["2 Old Road"]},
            {"use": "temp", "postalCode": "BS3 3AA", "line": ["Halls"]},
            {"use": "work", "postalCode": "W1A 0AX", "line": ["Office"]},
            {"use": "home", "postalCode": "BS5 5AA", "period": {"start": "2099-01-01"}},
            {"use": "home", "line": ["7 New Street", "Flat 2"], "postalCode": "ba1  1aa"},
        ]
    )
    row = values(resource)
    assert (row[POSTCODE], row[LINE]) == ("ba1  1aa", "7 New Street")


def test_a_temporary_address_when_no_home_is_current():
    resource = patient(
        address=[
            {"use": "home", "postalCode": "BS1 1AA", "period": {"end": "2020-03-01"}},
            {"use": "temp", "postalCode": "BS3 3AA", "line": ["Halls"]},
            {"use": "home", "text": "no fixed abode"},
        ]
    )
    assert values(resource)[POSTCODE] == "BS3 3AA"


def test_odd_postcode_spacing_normalises(tmp_path):
    records, _, _ = normalise(
        tmp_path,
        [
            patient("a", address=[{"use": "home", "postalCode": " ba1  1aa "}]),
            patient("b", address=[{"use": "home", "postalCode": "BA11AA"}]),
            patient("c", address=[{"postalCode": "ba1 1aa", "period": {"end": "2001"}}]),
        ],
    )
    assert [r.postcode for r in records] == ["BA1 1AA"] * 3


# --- containers --------------------------------------------------------------------------


def _bundle(kind, entries, **extra):
    return {"resourceType": "Bundle", "type": kind, **extra, "entry": entries}


def test_searchset_includes_and_outcomes_are_skipped_not_reported(tmp_path):
    entries = [
        {"fullUrl": "Patient/a", "resource": patient("a"), "search": {"mode": "match"}},
        {
            "fullUrl": "Organization/o",
            "resource": {"resourceType": "Organization", "id": "o", "name": "A Practice"},
            "search": {"mode": "include"},
        },
        {
            "resource": {"resourceType": "Practitioner", "id": "d", "name": [{"family": "Who"}]},
            "search": {"mode": "include"},
        },
        {"resource": patient("b"), "search": {"mode": "include"}},
        {
            "resource": {"resourceType": "OperationOutcome", "issue": []},
            "search": {"mode": "outcome"},
        },
    ]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_bundle("searchset", entries, total=2)), encoding="utf-8")
    rows, problems, skipped = read(path)
    assert [(n, v[LOCAL_ID]) for n, v in rows] == [(1, "a"), (4, "b")]
    assert problems == []
    assert skipped == [2, 3, 5]


def test_transaction_and_collection_bundles(tmp_path):
    transaction = _bundle(
        "transaction",
        [
            {"resource": patient("a"), "request": {"method": "POST", "url": "Patient"}},
            {"resource": patient("b"), "request": {"method": "PUT", "url": "Patient/b"}},
            {"request": {"method": "DELETE", "url": "Patient/c"}},
        ],
    )
    collection = _bundle("collection", [{"fullUrl": "urn:uuid:1", "resource": patient("a")}])
    (tmp_path / "t.json").write_text(json.dumps(transaction), encoding="utf-8")
    (tmp_path / "c.json").write_text(json.dumps(collection), encoding="utf-8")
    rows, problems, skipped = read(tmp_path / "t.json")
    assert ([v[LOCAL_ID] for _, v in rows], problems, skipped) == (["a", "b"], [], [3])
    rows, problems, skipped = read(tmp_path / "c.json")
    assert ([v[LOCAL_ID] for _, v in rows], problems, skipped) == (["a"], [], [])


def test_other_resource_types_in_ndjson_are_counted_not_reported(tmp_path):
    path = tmp_path / "export.ndjson"
    lines = [
        patient("a"),
        {"resourceType": "Observation", "id": "o"},
        {"resourceType": "Encounter", "id": "e"},
        patient("b"),
    ]
    path.write_text("\r\n".join(json.dumps(r) for r in lines) + "\r\n", encoding="utf-8")
    rows, problems, skipped = read(path)
    assert ([(n, v[LOCAL_ID]) for n, v in rows], problems, skipped) == (
        [(1, "a"), (4, "b")],
        [],
        [2, 3],
    )


def test_meta_contained_and_extensions_are_ignored():
    plain = patient(
        identifier=[{"system": FHIR_NHS_NUMBER_SYSTEM, "value": nhs_number(1)}],
        name=[{"family": "Smith", "given": ["Jo"]}],
        birthDate="1980-02-01",
        gender="female",
        address=[{"postalCode": "BA1 1AA", "line": ["1 High St"]}],
    )
    extension = [{"url": "https://example.org/ext", "valueString": "Somebody Else"}]
    decorated = {
        **plain,
        "meta": {"versionId": "3", "profile": ["https://fhir.hl7.org.uk/StructureDefinition/x"]},
        "text": {"status": "generated", "div": "<div>Somebody Else 1970-01-01</div>"},
        "contained": [patient("other", name=[{"use": "official", "family": "Else"}])],
        "extension": extension,
        "modifierExtension": extension,
        "identifier": [{**plain["identifier"][0], "extension": extension}],
        "name": [{**plain["name"][0], "extension": extension, "_family": {"extension": extension}}],
        "_birthDate": {"extension": extension},
        "_gender": {"extension": extension},
        "address": [{**plain["address"][0], "extension": extension}],
    }
    assert values(decorated) == values(plain)


def test_inactive_patients_are_read_and_merged_duplicates_skipped(tmp_path):
    path = tmp_path / "p.ndjson"
    lines = [
        patient("left", active=False),
        patient("dead", deceasedDateTime="2020-01-01"),
        patient(
            "dup", active=False, link=[{"other": {"reference": "Patient/x"}, "type": "replaced-by"}]
        ),
        patient("x", link=[{"other": {"reference": "Patient/dup"}, "type": "replaces"}]),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    rows, problems, skipped = read(path)
    assert [v[LOCAL_ID] for _, v in rows] == ["left", "dead", "x"]
    assert (problems, skipped) == ([], [3])


@pytest.mark.parametrize("indent", [None, 2, "\t"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_bom_and_pretty_printing(tmp_path, indent, bom):
    resources = [patient("a", gender="male"), patient("b", gender="female")]
    document = _bundle("collection", [{"resource": r} for r in resources])
    bundle = tmp_path / "b.json"
    bundle.write_bytes(bom + json.dumps(document, indent=indent).encode())
    ndjson = tmp_path / "p.ndjson"
    ndjson.write_bytes(bom + b"".join(json.dumps(r).encode() + b"\n" for r in resources))
    for path in (bundle, ndjson):
        rows, problems, skipped = read(path)
        assert [v[GENDER] for _, v in rows] == ["male", "female"], path.name
        assert [n for n, _ in rows] == [1, 2]
        assert (problems, skipped) == ([], [])


def test_a_bundle_with_sorted_keys_has_its_entries_before_its_type(tmp_path):
    document = _bundle("collection", [{"resource": patient(str(i))} for i in range(3)])
    path = tmp_path / "b.json"
    path.write_text(json.dumps(document, indent=1, sort_keys=True), encoding="utf-8")
    assert [v[LOCAL_ID] for _, v in read(path)[0]] == ["0", "1", "2"]


def test_pretty_printed_resources_without_a_bundle(tmp_path):
    path = tmp_path / "patient.json"
    path.write_text(
        json.dumps(patient("a"), indent=2) + "\n" + json.dumps(patient("b"), indent=2),
        encoding="utf-8",
    )
    rows, problems, _ = read(path)
    assert ([(n, v[LOCAL_ID]) for n, v in rows], problems) == ([(1, "a"), (2, "b")], [])


def test_progress_reaches_the_end_of_a_bundle(tmp_path):
    path = tmp_path / "b.json"
    _write(path, 16_400, "minified")  # one report every 16,384 Patients, one at the end
    seen: list[int] = []
    count = len(list(read_fhir(path, FIELDS, on_progress=seen.append, today=TODAY)))
    assert count == 16_400
    assert len(seen) == 2 and seen[0] < seen[1] == path.stat().st_size


# --- errors ------------------------------------------------------------------------------


def test_bad_bundle_entries_are_reported_by_entry_number(tmp_path):
    entries = [
        {"resource": patient("a")},
        "not an entry",
        {"fullUrl": "urn:uuid:2"},
        {"resource": ["not", "a", "resource"]},
        {"resource": {"id": "no type"}},
        {"resource": patient("b")},
    ]
    path = tmp_path / "b.json"
    path.write_text(json.dumps(_bundle("collection", entries), indent=2), encoding="utf-8")
    rows, problems, _ = read(path)
    assert [(n, v[LOCAL_ID]) for n, v in rows] == [(1, "a"), (6, "b")]
    assert problems == [
        (2, None, "bundle entry is not an object"),
        (3, None, "bundle entry without a resource"),
        (4, None, "resource is not an object"),
        (5, None, "resource without a resourceType"),
    ]


def test_a_cut_off_bundle_stops_with_the_last_entry_read(tmp_path):
    entries = [{"resource": patient(str(i), name=[{"family": "Secretname"}])} for i in range(5)]
    text = json.dumps(_bundle("collection", entries), indent=2)
    path = tmp_path / "b.json"
    path.write_text(text[: text.index('"3"') + 20], encoding="utf-8")
    seen = []
    with pytest.raises(InputError, match=r"not valid JSON after entry 3 \(") as caught:
        for _, row in read_fhir(path, FIELDS, today=TODAY):
            seen.append(row[LOCAL_ID])
    assert seen == ["0", "1", "2"]
    assert "Secretname" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_ndjson_with_a_broken_first_line_goes_on(tmp_path):
    path = tmp_path / "p.ndjson"
    path.write_text(
        '{"resourceType": "Patient", "id": "a", "name": [{"fam\n' + json.dumps(patient("b")) + "\n",
        encoding="utf-8",
    )
    rows, problems, _ = read(path)
    assert [(n, v[LOCAL_ID]) for n, v in rows] == [(2, "b")]
    assert problems == [(1, None, "not a JSON object")]


@pytest.mark.parametrize(
    "content",
    [
        "ID,NAME\n1,Jo Smith\n",
        "[]",
        '[{"resourceType": "Patient", "id": "a"}]',
        '{"hello": "world"}\n{"not": "fhir"}\n',
        "just some text",
        '"a string"',
    ],
)
def test_a_file_that_is_not_fhir_is_one_line(tmp_path, content):
    path = tmp_path / "x.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match="neither FHIR NDJSON nor a Bundle"):
        list(read_fhir(path, FIELDS))


def test_bad_bytes_in_a_bundle_entry_reject_only_that_entry(tmp_path):
    path = tmp_path / "b.json"
    path.write_bytes(
        b'{"resourceType": "Bundle", "type": "collection", "entry": [\n'
        b'{"resource": {"resourceType": "Patient", "id": "a",'
        b' "name": [{"family": "M\xfcller"}]}},\n'
        b'{"resource": {"resourceType": "Patient", "id": "b", "name": [{"family": "Smith"}]}}\n'
        b"]}\n"
    )
    rows, problems, _ = read(path)
    assert [v[LOCAL_ID] for _, v in rows] == ["b"]
    assert problems == [(1, None, "bytes not valid in utf-8")]


# --- memory ------------------------------------------------------------------------------


def _write(path, count, layout):
    resource = patient(
        "0",
        identifier=[{"system": FHIR_NHS_NUMBER_SYSTEM, "value": nhs_number(1)}],
        name=[{"use": "official", "family": "Smith", "given": ["Jo", "Ann"]}],
        birthDate="1980-02-01",
        gender="female",
        address=[{"use": "home", "line": ["1 High Street"], "postalCode": "BA1 1AA"}],
        meta={"versionId": "1", "lastUpdated": "2024-01-01T00:00:00Z"},
    )
    with path.open("w", encoding="utf-8") as out:
        if layout == "ndjson":
            for i in range(count):
                out.write(json.dumps({**resource, "id": str(i)}) + "\n")
            return
        indent = 2 if layout == "pretty" else None
        out.write('{"resourceType": "Bundle", "type": "collection", "entry": [')
        for i in range(count):
            entry = {"fullUrl": f"urn:uuid:{i}", "resource": {**resource, "id": str(i)}}
            out.write(("," if i else "") + json.dumps(entry, indent=indent))
        out.write("]}")


def _peak(path):
    gc.collect()
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_fhir(path, FIELDS, today=TODAY))
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("layout", ["minified", "pretty", "ndjson"])
def test_memory_stays_flat_in_the_number_of_entries(tmp_path, layout):
    """Ten times the entries, the same peak (read whole, 2,000 entries peak near 10 MB)."""
    small, large = tmp_path / "small.json", tmp_path / "large.json"
    _write(small, 200, layout)
    _write(large, 2000, layout)
    (small_count, small_peak), (large_count, large_peak) = _peak(small), _peak(large)
    assert (small_count, large_count) == (200, 2000)
    assert large_peak < small_peak + 64_000, (small_peak, large_peak)
    assert large_peak < large.stat().st_size / 2, large_peak
