"""Golden token vectors (keys/vectors/tokens.json), pinned, and re-derived from scratch.

The second test rebuilds every HMAC input by hand from docs/token-format.md with the
standard library only, so the document, the vectors and the code cannot drift apart.
Regenerate (only on a deliberate format change, which changes every token)::

    .venv/bin/python tests/client_sdk/test_tokenise_vectors.py --write
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import tomllib
from pathlib import Path

from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.derive import DomainKey
from keys.spec import LinkageSpec, default_spec, parse_spec

VECTORS = Path(__file__).resolve().parents[2] / "keys" / "vectors" / "tokens.json"

DOMAIN_KEY = bytes(range(32))
REFERENCE_SECRET = bytes(range(32, 64))
DOMAIN = "example-health"
KEY_VERSION = "v1"
DATASET = "example-gp"

RECORDS = [
    NormalisedRecord(
        line=2,
        local_id="GP000001",
        nhs_number="9434765919",
        given_name="WILLIAM",
        given_name_key="WILLIAM",
        family_name="OBRIEN",
        date_of_birth="1984-07-03",
        sex="M",
        postcode="BA1 1AA",
    ),
    NormalisedRecord(
        line=3,
        local_id="GP000002",
        given_name="ZOE",
        given_name_key="ZOE",
        middle_names="ANNE",
        family_name="SMITH JONES",
        date_of_birth="2001-12-25",
        sex="F",
        postcode="SW1A 2AA",
    ),
    NormalisedRecord(
        line=4,
        local_id="GP000003",
        nhs_number="9434765870",
        given_name="LUKASZ",
        given_name_key="LUKASZ",
        family_name="WOJCIK",
        date_of_birth="1950-01-31",
        postcode=None,
    ),
    # The first record with given and family names entered in each other's fields.
    NormalisedRecord(
        line=5,
        local_id="GP000004",
        given_name="OBRIEN",
        given_name_key="OBRIEN",
        family_name="WILLIAM",
        date_of_birth="1984-07-03",
        sex="M",
        postcode="BA1 1AA",
    ),
]


# Places, non-UK postcode prefixes and the raw date of birth (issue 17): their own spec.
PLACES_SPEC = """\
name = "example-places"

[[match_keys]]
name = "names_dob_prefix3"
fields = ["given_name", "family_name", "date_of_birth", "postcode:prefix3"]

[[match_keys]]
name = "family_dob_prefix2_region"
fields = ["family_name", "date_of_birth", "postcode:prefix2", "region"]

[[match_keys]]
name = "names_address_locality"
fields = ["given_name", "family_name", "address_line", "locality"]

[[match_keys]]
name = "names_rawdob_locality"
fields = ["given_name", "family_name", "date_of_birth_raw", "locality"]
"""
PLACES_FIELDS = (
    "local_id",
    "given_name",
    "family_name",
    "date_of_birth",
    "date_of_birth_raw",
    "postcode",
    "address_line",
    "locality",
    "region",
)
_FEBRL_PERSON = NormalisedRecord(
    line=2,
    local_id="AU000001",
    given_name="MICHAELA",
    given_name_key="MICHAELA",
    family_name="NEUMANN",
    date_of_birth="1915-11-11",
    postcode="4223",
    address_line="8 STANLEY STREET MIAMI",
    locality="WINSTON HILLS",
    region="NSW",
)
PLACES_RECORDS = [
    _FEBRL_PERSON,
    # The same person with a date of birth that does not exist (31 November).
    _FEBRL_PERSON._replace(
        line=3, local_id="AU000002", date_of_birth=None, date_of_birth_raw="19151131"
    ),
    # A UK postcode has no prefix: use its district and sector.
    NormalisedRecord(
        line=4,
        local_id="GB000003",
        given_name="WILLIAM",
        given_name_key="WILLIAM",
        family_name="OBRIEN",
        date_of_birth="1984-07-03",
        postcode="BA1 1AA",
        address_line="1 HIGH STREET",
        locality="BATH",
        region="SOMERSET",
    ),
]


def places_spec() -> LinkageSpec:
    return parse_spec(tomllib.loads(PLACES_SPEC), source="example-places")


def _tokeniser(spec: LinkageSpec | None = None) -> Tokeniser:
    return Tokeniser(
        TokeniseParams(
            spec=spec or default_spec(),
            domain_key=DomainKey(DOMAIN_KEY),
            domain=DOMAIN,
            key_version=KEY_VERSION,
            reference_secret=REFERENCE_SECRET,
            dataset=DATASET,
        )
    )


def _cases(
    spec: LinkageSpec, records: list[NormalisedRecord], fields: tuple[str, ...]
) -> list[dict[str, object]]:
    tokeniser = _tokeniser(spec)
    cases: list[dict[str, object]] = []
    for record in records:
        row = tokeniser.row(record)
        inputs = tokeniser.key_values_of_row(row)
        tokens = tokeniser.tokens_of_row(row)
        cases.append(
            {
                "record": {k: getattr(record, k) for k in fields},
                "reference": tokeniser.reference(record.local_id).hex(),
                "tokens": {
                    name: (
                        None
                        if token is None
                        else {"values_encoded": data.hex(), "token": token.hex()}  # type: ignore[union-attr]
                    )
                    for name, token, data in zip(spec.key_names, tokens, inputs, strict=True)
                },
            }
        )
    return cases


def compute_vectors() -> dict[str, object]:
    """The vectors file as the current code derives it."""
    spec = default_spec()
    fields = (
        "local_id",
        "nhs_number",
        "given_name",
        "given_name_key",
        "family_name",
        "date_of_birth",
        "sex",
        "postcode",
    )
    places = places_spec()
    return {
        "description": "Tessera token vectors: docs/token-format.md. Default UK health spec.",
        "domain_key": DOMAIN_KEY.hex(),
        "reference_secret": REFERENCE_SECRET.hex(),
        "domain": DOMAIN,
        "key_version": KEY_VERSION,
        "dataset": DATASET,
        "spec_hash": spec.content_hash,
        "match_keys": spec.key_names,
        "cases": _cases(spec, RECORDS, fields),
        "places": {
            "description": "Places, non-UK postcode prefixes and the raw date of birth, "
            "under the spec in 'spec' (same keys, domain, version and dataset as above).",
            "spec": PLACES_SPEC,
            "spec_hash": places.content_hash,
            "match_keys": places.key_names,
            "cases": _cases(places, PLACES_RECORDS, PLACES_FIELDS),
        },
    }


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def test_golden_vectors_are_pinned() -> None:
    assert json.loads(VECTORS.read_text()) == compute_vectors()


def test_vectors_follow_the_documented_recipe() -> None:
    vectors = json.loads(VECTORS.read_text())
    key = bytes.fromhex(vectors["domain_key"])
    secret = bytes.fromhex(vectors["reference_secret"])
    prefix = (
        b"tessera/v1/token"
        + _field(vectors["domain"].encode())
        + _field(vectors["key_version"].encode())
        + _field(vectors["spec_hash"].encode())
    )
    emitted = 0
    places = vectors["places"]
    places_prefix = (
        b"tessera/v1/token"
        + _field(vectors["domain"].encode())
        + _field(vectors["key_version"].encode())
        + _field(places["spec_hash"].encode())
    )
    assert places["spec_hash"] == places_spec().content_hash
    for case, case_prefix in [(c, prefix) for c in vectors["cases"]] + [
        (c, places_prefix) for c in places["cases"]
    ]:
        message = b"tessera/v1/reference" + _field(vectors["dataset"].encode())
        message += _field(case["record"]["local_id"].encode())
        reference = hmac.new(secret, message, hashlib.sha256).digest()[:16]
        assert reference.hex() == case["reference"]
        for name, entry in case["tokens"].items():
            if entry is None:
                continue
            emitted += 1
            message = case_prefix + _field(name.encode()) + bytes.fromhex(entry["values_encoded"])
            token = hmac.new(key, message, hashlib.sha256).digest()[:16]
            assert token.hex() == entry["token"]
    assert emitted >= 12


def test_places_vectors_are_the_documented_ones() -> None:
    doc = (VECTORS.parents[2] / "docs" / "token-format.md").read_text(encoding="utf-8")
    section = doc[doc.index("### Places, postcode prefixes and the raw date of birth") :]
    places = json.loads(VECTORS.read_text())["places"]
    assert f"```toml\n{places['spec']}```" in section
    assert f"spec hash `{places['spec_hash']}`" in section
    for case in places["cases"]:
        for entry in case["tokens"].values():
            if entry is not None:
                assert f"`{entry['token']}`" in section


def test_documented_places_prefixes_and_raw_date() -> None:
    """The places vectors spelled out: prefixes of a non-UK postcode, none for a UK one,
    and the raw digits of a date that does not exist (docs/token-format.md)."""
    cases = json.loads(VECTORS.read_text())["places"]["cases"]
    first, raw, uk = (case["tokens"] for case in cases)
    names = _field(b"MICHAELA") + _field(b"NEUMANN")
    dob = _field(b"1915-11-11")
    assert bytes.fromhex(first["names_dob_prefix3"]["values_encoded"]) == (
        names + dob + _field(b"422")
    )
    assert bytes.fromhex(first["family_dob_prefix2_region"]["values_encoded"]) == (
        _field(b"NEUMANN") + dob + _field(b"42") + _field(b"NSW")
    )
    assert first["names_rawdob_locality"] is None  # a real date has no raw digits
    assert raw["names_dob_prefix3"] is None and raw["family_dob_prefix2_region"] is None
    assert bytes.fromhex(raw["names_rawdob_locality"]["values_encoded"]) == (
        names + _field(b"19151131") + _field(b"WINSTON HILLS")
    )
    assert raw["names_address_locality"] == first["names_address_locality"]
    assert bytes.fromhex(first["names_address_locality"]["values_encoded"]) == (
        names + _field(b"8 STANLEY STREET MIAMI") + _field(b"WINSTON HILLS")
    )
    assert uk["names_dob_prefix3"] is None and uk["family_dob_prefix2_region"] is None
    assert uk["names_address_locality"] is not None


def test_documented_canonical_values() -> None:
    """The first record's values, spelled out as docs/token-format.md shows them."""
    vectors = json.loads(VECTORS.read_text())
    tokens = vectors["cases"][0]["tokens"]
    nhs_dob = bytes.fromhex(tokens["nhs_dob"]["values_encoded"])
    assert nhs_dob == _field(b"9434765919") + _field(b"1984-07-03")
    swapped = bytes.fromhex(tokens["family_given_swapdob_postcode"]["values_encoded"])
    assert swapped == _field(b"OBRIEN") + _field(b"WILLIAM") + _field(b"1984-03-07") + _field(
        b"BA1 1AA"
    )


def test_documented_unordered_names() -> None:
    """The names as an unordered pair: the encoded fields sorted bytewise, so a record with
    its names in each other's fields has the same input and token (docs/token-format.md)."""
    vectors = json.loads(VECTORS.read_text())
    first, swapped = vectors["cases"][0], vectors["cases"][3]
    entry = first["tokens"]["given_family_dob_postcode"]
    pair = b"".join(sorted([_field(b"WILLIAM"), _field(b"OBRIEN")]))
    assert pair == _field(b"OBRIEN") + _field(b"WILLIAM")  # shorter first: the length prefix
    expected = pair + _field(b"1984-07-03") + _field(b"BA1 1AA")
    assert bytes.fromhex(entry["values_encoded"]) == expected
    assert swapped["tokens"]["given_family_dob_postcode"] == entry
    # The ordered names of the district key tell the two records apart.
    assert (
        swapped["tokens"]["given_family_dob_district"]
        != first["tokens"]["given_family_dob_district"]
    )
    assert swapped["tokens"]["nhs_dob"] is None
    # Sorted as encoded, not as text: ZOE (length 3) before SMITH JONES (length 11).
    second = vectors["cases"][1]["tokens"]["given_family_dob_postcode"]
    assert bytes.fromhex(second["values_encoded"]).startswith(
        _field(b"ZOE") + _field(b"SMITH JONES")
    )


def test_no_token_for_a_missing_field() -> None:
    vectors = json.loads(VECTORS.read_text())
    second, third = vectors["cases"][1], vectors["cases"][2]
    assert second["tokens"]["nhs_dob"] is None  # no NHS number
    assert second["tokens"]["given_family_dob_postcode"] is not None
    assert third["tokens"]["nhs_dob"] is not None
    assert third["tokens"]["given_dob_postcode_sex"] is None  # no sex, no postcode
    assert third["tokens"]["given_family_dob_postcode"] is None  # no postcode


if __name__ == "__main__" and "--write" in sys.argv:
    VECTORS.write_text(json.dumps(compute_vectors(), indent=2) + "\n")
    print(f"wrote {VECTORS}")
