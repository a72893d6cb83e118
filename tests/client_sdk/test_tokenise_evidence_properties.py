"""Properties of the probabilistic stage's evidence (block and comparison tokens).

Deterministic, independent of row order and of how rows fall into chunks and windows, and
nothing for a missing or placeholder value: neither a block token for a blocking key over
it nor a comparison token of a comparison on it. The golden vectors
(test_tokenise_evidence_vectors.py) pin the values; these pin the behaviour around them.
"""

from __future__ import annotations

import csv
import os
import tempfile
from datetime import date
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keys.derive
from client_sdk.evidence import Evidence
from client_sdk.mapping import parse_mapping
from client_sdk.pipeline import iter_records
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.chunk import decode_chunk
from keys.derive import DomainKey
from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec

SPEC = default_spec(PROBABILISTIC_SPEC_NAME)
PARAMS = TokeniseParams(
    spec=SPEC,
    domain_key=DomainKey(b"\x55" * 32),
    domain="prop-health",
    key_version="v1",
    reference_secret=b"\x66" * 32,
    dataset="prop",
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
GIVEN = ["WILLIAM", "BILL", "MARY", "OLIVIA", "ZOE", "ANNE", "SEAN", "MUHAMMAD"]
FAMILY = ["SMITH", "OBRIEN", "GARCIA", "NGUYEN", "SMITH JONES", "MULLER"]
NHS = ["9434765919", "9434765870", "4010232137", "9434765862", ""]
POSTCODES = ["BA1 1AA", "SW1A 2AA", "BS8 1TH", "TA1 4DY", ""]
# Column → the spec fields it feeds.
FIELDS_OF = {
    "NHS": {"nhs_number"},
    "GIVEN": {"given_name", "given_name_key"},
    "FAMILY": {"family_name"},
    "DOB": {"date_of_birth"},
    "SEX": {"sex"},
    "POSTCODE": {"postcode"},
}
PLACEHOLDERS = {
    "NHS": ["0000000000", "9999999999", "not known"],
    "GIVEN": ["UNKNOWN", "Baby", "NOT KNOWN"],
    "FAMILY": ["UNKNOWN", "Not Known"],
    "DOB": ["1900-01-01"],
    "SEX": ["U", "unknown"],
    "POSTCODE": ["ZZ99 3VZ"],
}


def _records(rows: list[list[str]]) -> list[NormalisedRecord]:
    """The rows read and normalised by the real reader and mapping."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(HEADER)
            writer.writerows(rows)
        return list(iter_records(path, MAPPING))


@st.composite
def _row(draw: st.DrawFn) -> list[str]:
    born = draw(st.dates(min_value=date(1920, 1, 1), max_value=date(2024, 12, 31)))
    return [
        str(draw(st.integers(1, 10**9))),
        draw(st.sampled_from(NHS)),
        draw(st.sampled_from(GIVEN)),
        draw(st.sampled_from(FAMILY)),
        draw(st.sampled_from([born.isoformat(), ""])),
        draw(st.sampled_from(["M", "F", ""])),
        draw(st.sampled_from(POSTCODES)),
    ]


def _evidence_of_chunk(tokeniser: Tokeniser, records: list[NormalisedRecord]) -> list[Evidence]:
    """Each record's evidence as the encoded chunk carries it."""
    chunk = decode_chunk(tokeniser.encode_rows([tokeniser.row(r) for r in records]).data)
    assert chunk.evidence is not None
    return list(zip(chunk.evidence.blocks, chunk.evidence.cells(), strict=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row(), min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_evidence_is_deterministic_and_independent_of_row_order(
    rows: list[list[str]], rng: object
) -> None:
    records = _records(rows)
    if not records:
        return
    first = _evidence_of_chunk(Tokeniser(PARAMS), records)
    again = _evidence_of_chunk(Tokeniser(PARAMS), records)  # a fresh tokeniser, cold caches
    assert first == again
    order = list(range(len(records)))
    rng.shuffle(order)  # type: ignore[attr-defined]
    shuffled = _evidence_of_chunk(Tokeniser(PARAMS), [records[i] for i in order])
    assert [first[i] for i in order] == shuffled
    one_by_one = Tokeniser(PARAMS)
    assert [one_by_one.evidence(r) for r in records] == first


def test_a_chunk_of_several_windows_is_each_records_own_evidence() -> None:
    rows = [
        [
            str(i),
            NHS[i % len(NHS)],
            GIVEN[i % len(GIVEN)],
            FAMILY[i % len(FAMILY)],
            date(1930 + i % 80, 1 + i % 12, 1 + i % 28).isoformat(),
            "MF"[i % 2],
            POSTCODES[i % len(POSTCODES)],
        ]
        for i in range(2_600)  # more than two windows of the evidence derivation
    ]
    records = _records(rows)
    tokeniser = Tokeniser(PARAMS)
    chunk = _evidence_of_chunk(tokeniser, records)
    assert len(chunk) == len(records) == 2_600
    for i in (0, 1023, 1024, 1025, 2047, 2048, 2599):
        assert chunk[i] == tokeniser.evidence(records[i])
    assert len({blocks for blocks, _ in chunk}) > 1000  # distinct people, distinct blocks


def _absent_columns(fields: set[str]) -> tuple[set[int], set[int]]:
    """The blocking keys over ``fields``, and the evidence columns with no token without them."""
    blocks = {
        j
        for j, key in enumerate(SPEC.blocking_keys)
        if any(leaf.field in fields for leaf in key.leaves)
    }
    columns = {
        k
        for k, column in enumerate(SPEC.evidence_columns)
        if column.block in blocks or SPEC.comparisons[column.comparison].field in fields
    }
    return blocks, columns


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(PLACEHOLDERS)), st.booleans(), st.data())
def test_missing_and_placeholder_values_never_produce_evidence(
    column: str, placeholder: bool, data: st.DataObject
) -> None:
    row = ["1", "9434765919", "WILLIAM", "SMITH", "1984-07-03", "M", "BA1 1AA"]
    row[HEADER.index(column)] = (
        data.draw(st.sampled_from(PLACEHOLDERS[column])) if placeholder else ""
    )
    records = _records([row])
    if not records:  # the whole row was rejected: nothing tokenised at all
        return
    ((blocks, cells),) = _evidence_of_chunk(Tokeniser(PARAMS), records)
    no_block, no_tokens = _absent_columns(FIELDS_OF[column])
    for j, token in enumerate(blocks):
        assert (token is None) == (j in no_block), (column, SPEC.blocking_keys[j].name)
    for k, cell in enumerate(cells):
        if k in no_tokens:
            assert cell == (), (column, SPEC.evidence_columns[k])
    assert any(cells), "the other fields still give evidence"


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 300).map(lambda n: 16 * n), st.randoms(use_true_random=False))
def test_the_xor_gives_the_same_bytes_with_and_without_pyarrow(size: int, rng: object) -> None:
    a = rng.randbytes(size)  # type: ignore[attr-defined]
    b = os.urandom(size)
    assert keys.derive._xor(a, b) == keys.derive._xor_ints(a, b)
    assert keys.derive._xor_ints(keys.derive._xor(a, b), b) == a
