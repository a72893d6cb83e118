"""Streams the SDK reads since issue 15: gzip CSV and NDJSON, several Bundles in one file."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from client_sdk.errors import InputError
from client_sdk.mapping import FHIR_NHS_NUMBER_SYSTEM
from client_sdk.readers.csv import read_csv
from client_sdk.readers.fhir import FhirFields, read_fhir

DATA = Path(__file__).parent.parent / "data"
SDK = str(Path(sys.executable).with_name("tessera-sdk"))
FIELDS = FhirFields(
    id_system=None,
    nhs_system=FHIR_NHS_NUMBER_SYSTEM,
    other_system=None,
    names=True,
    birth_date=True,
    gender=True,
    postcode=True,
    address_line=True,
    payload=(),
)


@pytest.mark.parametrize("name", ["gp.csv.gz", "gp.csv", "gp"])  # the bytes decide, not the name
def test_gzip_csv_reads_as_the_plain_file(tmp_path, name):
    plain = (DATA / "messy.csv").read_bytes()
    path = tmp_path / name
    path.write_bytes(gzip.compress(plain))
    header = plain.decode("utf-8").splitlines()[0].split(",")
    expected = list(read_csv(DATA / "messy.csv", header[:3]))
    assert list(read_csv(path, header[:3])) == expected
    assert expected


def test_gzip_with_a_bom_and_cp1252(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(gzip.compress("ID,NAME\r\n1,Zoë\r\n".encode("cp1252")))
    assert list(read_csv(path, ["ID", "NAME"], encoding="cp1252")) == [(2, ("1", "Zoë"))]
    path.write_bytes(gzip.compress(b"\xef\xbb\xbfID,NAME\r\n1,Zo\xc3\xab\r\n"))
    assert list(read_csv(path, ["ID", "NAME"], encoding="cp1252")) == [(2, ("1", "Zoë"))]


def test_several_gzip_members_read_as_one_stream(tmp_path):
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(b"ID,NAME\n1,A\n") + gzip.compress(b"2,B\n"))
    assert list(read_csv(path, ["ID", "NAME"])) == [(2, ("1", "A")), (3, ("2", "B"))]


def test_gzip_ndjson_reads_as_the_plain_file(tmp_path):
    path = tmp_path / "patients.ndjson.gz"
    path.write_bytes(gzip.compress((DATA / "patients.ndjson").read_bytes()))
    assert list(read_fhir(path, FIELDS)) == list(read_fhir(DATA / "patients.ndjson", FIELDS))


def test_progress_counts_bytes_on_disk(tmp_path):
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(b"ID\n" + b"".join(b"%d\n" % i for i in range(40_000))))
    seen: list[int] = []
    rows = list(read_csv(path, ["ID"], on_progress=seen.append))
    assert len(rows) == 40_000
    assert seen and max(seen) <= path.stat().st_size


def test_a_cut_off_gzip_is_an_input_error(tmp_path):
    path = tmp_path / "x.csv.gz"
    whole = gzip.compress(b"ID,NAME\n" + b"".join(b"%d,N\n" % i for i in range(50_000)))
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="cut short or corrupted"):
        list(read_csv(path, ["ID", "NAME"]))


def test_a_cut_off_gzip_is_one_line_from_the_cli(tmp_path):
    path = tmp_path / "x.csv.gz"
    whole = gzip.compress((DATA / "messy.csv").read_bytes() * 50)
    path.write_bytes(whole[: len(whole) - 40])
    result = subprocess.run(
        [SDK, "check", str(path), "--mapping", str(DATA / "messy.toml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "cut short or corrupted" in result.stderr


def _bundle(*ids: str) -> dict[str, object]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Patient", "id": i}} for i in ids],
    }


@pytest.mark.parametrize("separator", ["", "\n", "\n\n  "])
def test_several_bundles_in_one_file_are_one_extract(tmp_path, separator):
    path = tmp_path / "pages.json"
    pages = [_bundle("a", "b"), _bundle("c"), _bundle("d", "e")]
    path.write_text(separator.join(json.dumps(p, indent=1) for p in pages), encoding="utf-8")
    rows = list(read_fhir(path, FIELDS))
    assert [(number, values[0]) for number, values in rows] == [
        (1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e"),
    ]  # fmt: skip


def test_bundles_one_a_line_gzip_compressed(tmp_path):
    path = tmp_path / "pages.ndjson.gz"
    pages = [_bundle("a"), _bundle("b", "c")]
    path.write_bytes(gzip.compress("\n".join(json.dumps(p) for p in pages).encode()))
    assert [values[0] for _, values in read_fhir(path, FIELDS)] == ["a", "b", "c"]


def test_a_broken_second_bundle_names_the_last_entry_read(tmp_path):
    path = tmp_path / "pages.json"
    path.write_text(json.dumps(_bundle("a", "b")) + '\n{"resourceType": "Bundle", "entry": [{',
                    encoding="utf-8")  # fmt: skip
    with pytest.raises(InputError, match="after entry 2"):
        list(read_fhir(path, FIELDS))
