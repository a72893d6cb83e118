"""Properties from raw input to tokens, through the real mapping, reader and normalisation.

Case, spacing, punctuation and diacritics of the raw input do not change tokens, and
placeholders are never tokenised.
"""

from __future__ import annotations

import csv
import tempfile
from datetime import date
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client_sdk.mapping import parse_mapping
from client_sdk.pipeline import iter_records
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.derive import DomainKey, Token
from keys.spec import default_spec

SPEC = default_spec()
TOKENISER = Tokeniser(
    TokeniseParams(
        spec=SPEC,
        domain_key=DomainKey(b"\x33" * 32),
        domain="prop-health",
        key_version="v1",
        reference_secret=b"\x44" * 32,
        dataset="prop",
    )
)
MAPPING = parse_mapping(
    {
        "source": {"format": "csv", "encoding": "utf-8"},
        "record": {"id": "ID"},
        "identifiers": {
            "nhs_number": "NHS",
            "given_name": "GIVEN",
            "family_name": "FAMILY",
            "date_of_birth": {"column": "DOB", "formats": ["%Y-%m-%d"]},
            "sex": "SEX",
            "postcode": "POSTCODE",
        },
    }
)
HEADER = ["ID", "NHS", "GIVEN", "FAMILY", "DOB", "SEX", "POSTCODE"]
GIVEN = ["WILLIAM", "MARY", "OLIVIA", "JOSE", "ZOE", "ANNE", "ELIZABETH", "SEAN"]
FAMILY = ["SMITH", "OBRIEN", "GARCIA", "NGUYEN", "WOJCIK", "SMITH JONES", "MULLER"]
NHS = ["9434765919", "9434765870", "4010232137"]
ACCENTS = {"A": "ÁÀÂÄ", "E": "ÉÈÊË", "I": "ÍÎÏ", "O": "ÓÔÖ", "U": "ÚÛÜ", "C": "Ç", "N": "Ñ"}


def _rows(rows: list[list[str]]) -> list[NormalisedRecord]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(HEADER)
            writer.writerows(rows)
        return list(iter_records(path, MAPPING))


@st.composite
def _messy_name(draw: st.DrawFn, name: str) -> str:
    out = []
    for ch in name:
        if ch in ACCENTS and draw(st.booleans()):
            ch = draw(st.sampled_from(ACCENTS[ch]))
        if ch == " ":
            ch = draw(st.sampled_from([" ", "  ", "-", " - "]))
        out.append(ch.lower() if draw(st.booleans()) else ch)
    text = "".join(out)
    return draw(st.sampled_from(["", " ", "  "])) + text + draw(st.sampled_from(["", " ", "."]))


@st.composite
def _person_and_mess(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    given = draw(st.sampled_from(GIVEN))
    family = draw(st.sampled_from(FAMILY))
    nhs = draw(st.sampled_from(NHS))
    dob = draw(st.dates(min_value=date(1920, 1, 1), max_value=date(2024, 12, 31)))
    dob_text = dob.isoformat()
    sex = draw(st.sampled_from(["M", "F"]))
    postcode = draw(st.sampled_from(["BA1 1AA", "SW1A 2AA", "BS8 1TH", "TA1 4DY"]))
    clean = ["1", nhs, given, family, dob_text, sex, postcode]
    messy_postcode = draw(
        st.sampled_from([postcode.replace(" ", ""), postcode.lower(), f" {postcode} "])
    )
    messy_nhs = draw(
        st.sampled_from(
            [nhs, f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}", f" {nhs}", f"{nhs[:3]}-{nhs[3:6]}-{nhs[6:]}"]
        )
    )
    messy_sex = draw(
        st.sampled_from({"M": ["m", "Male", "MALE", "1"], "F": ["f", "Female", "2"]}[sex])
    )
    messy = [
        "2",
        messy_nhs,
        draw(_messy_name(given)),
        draw(_messy_name(family)),
        f" {dob_text} ",
        messy_sex,
        messy_postcode,
    ]
    return clean, messy


def _tokens(record: NormalisedRecord) -> tuple[Token | None, ...]:
    return TOKENISER.tokens(record)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_person_and_mess())
def test_case_spacing_punctuation_and_diacritics_do_not_change_tokens(
    pair: tuple[list[str], list[str]],
) -> None:
    clean, messy = pair
    records = _rows([clean, messy])
    assert len(records) == 2
    a, b = (_tokens(r) for r in records)
    assert a == b
    assert all(t is not None for t in a)


PLACEHOLDERS = {
    "NHS": ["0000000000", "9999999999", "000 000 0000"],
    "GIVEN": ["UNKNOWN", "Baby", "NOT KNOWN"],
    "FAMILY": ["UNKNOWN", "Not Known"],
    "DOB": ["1900-01-01"],
    "POSTCODE": ["ZZ99 3VZ"],
}
FIELDS_OF = {
    "NHS": ("nhs_number",),
    "GIVEN": ("given_name", "given_name_key"),
    "FAMILY": ("family_name",),
    "DOB": ("date_of_birth",),
    "POSTCODE": ("postcode",),
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(PLACEHOLDERS)), st.data())
def test_placeholders_are_never_tokenised(column: str, data: st.DataObject) -> None:
    row = ["1", "9434765919", "WILLIAM", "SMITH", "1984-07-03", "M", "BA1 1AA"]
    row[HEADER.index(column)] = data.draw(st.sampled_from(PLACEHOLDERS[column]))
    records = _rows([row])
    if not records:  # the whole row was rejected: nothing tokenised at all
        return
    tokens = _tokens(records[0])
    fields = FIELDS_OF[column]
    for key, token in zip(SPEC.match_keys, tokens, strict=True):
        if any(f.field in fields for f in key.leaves):
            assert token is None, (column, key.name)
    assert any(t is not None for t in tokens), "the other keys still work"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    given=st.sampled_from(["WILLIAM", "Bill", "MARY", "zoe", "SEAN"]),
    family=st.sampled_from(["SMITH", "O'Brien", "NGUYEN", "Wojcik"]),
)
def test_names_entered_in_each_others_columns_share_the_unordered_key(
    given: str, family: str
) -> None:
    straight = ["1", "", given, family, "1984-07-03", "M", "BA1 1AA"]
    swapped = ["2", "", family, given, "1984-07-03", "M", "BA1 1AA"]
    a, b = (_tokens(r) for r in _rows([straight, swapped]))
    index = SPEC.key_names.index("given_family_dob_postcode")
    assert a[index] is not None
    assert a[index] == b[index]
    # The ordered name key (names, date of birth, postcode district) tells them apart.
    assert (
        a[SPEC.key_names.index("given_family_dob_district")]
        != b[SPEC.key_names.index("given_family_dob_district")]
    )
