"""Fast paths give what the plain ones give: blocks normalised in workers, chunks by column."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest

from client_sdk.local_index import LocalIndex
from client_sdk.mapping import load_mapping
from client_sdk.pipeline import iter_records, record_blocks
from client_sdk.quality import QualityCollector
from client_sdk.tokenise import TokeniseParams, Tokeniser
from client_sdk.tokenise_batch import tokenise_records, write_batch
from keys.chunk import TokenChunk, decode_chunk, encode_chunk, encode_chunk_columns
from keys.derive import RecordRef, Token
from keys.spec import default_spec, parse_spec
from tests.support.tokenise_world import fixed_params

DATA = Path(__file__).parent.parent / "data"
TODAY = date(2026, 11, 24)
EXTRACTS = [
    ("messy.csv", "messy.toml"),
    ("hospital_cp1252.csv", "hospital_cp1252.toml"),
    ("patients.ndjson", "patients_fhir.toml"),
]


def _params(payload: tuple[str, ...]) -> TokeniseParams:
    return fixed_params("blocks", payload)


@pytest.mark.parametrize(("extract", "mapping_name"), EXTRACTS)
@pytest.mark.parametrize("workers", [1, 2])
def test_blocks_give_the_chunks_and_report_of_a_single_pass(extract, mapping_name, workers):
    mapping = load_mapping(DATA / mapping_name)
    params = _params(tuple(mapping.payload.columns))
    single = QualityCollector()
    expected = list(
        tokenise_records(
            iter_records(DATA / extract, mapping, report=single, today=TODAY),
            params,
            chunk_records=3,
        )
    )
    blocked = QualityCollector(max_problems=single.max_problems)
    blocks = record_blocks(DATA / extract, mapping, report=blocked, today=TODAY, size=3)
    got = list(tokenise_records(blocks, params, workers=workers))
    assert [c.data for c in got] == [c.data for c in expected]
    assert [c.local_ids for c in got] == [c.local_ids for c in expected]
    assert blocked.report() == single.report()


def test_write_batch_from_blocks_counts_problems_where_a_single_pass_does(tmp_path):
    mapping = load_mapping(DATA / "messy.toml")
    params = _params(tuple(mapping.payload.columns))
    collector = QualityCollector(max_problems=2)
    blocks = record_blocks(DATA / "messy.csv", mapping, report=collector, today=TODAY, size=2)
    with LocalIndex.open(tmp_path, "blocks") as index:
        summary = write_batch(
            blocks,
            params,
            out=tmp_path / "b.batch",
            index=index,
            quality=lambda: collector.report().model_dump(mode="json"),
        )
    single = QualityCollector(max_problems=2)
    records = list(iter_records(DATA / "messy.csv", mapping, report=single, today=TODAY))
    assert summary.manifest.record_count == len(records)
    assert summary.manifest.quality == single.report().model_dump(mode="json")
    assert len(single.report().value_problems) <= 2


def test_block_size_must_be_positive():
    mapping = load_mapping(DATA / "messy.toml")
    with pytest.raises(ValueError, match="size"):
        record_blocks(DATA / "messy.csv", mapping, report=QualityCollector(), size=0)


def test_column_encoding_decodes_to_the_rows_it_was_given():
    refs = [RecordRef(bytes([i]) * 16) for i in range(4)]
    tokens: list[tuple[Token | None, ...]] = [
        (Token(b"a" * 16), None, Token(b"b" * 16)),
        (None, None, None),
        (Token(b"c" * 16), Token(b"d" * 16), None),
        (None, Token(b"e" * 16), Token(b"f" * 16)),
    ]
    payload: list[tuple[str | None, ...]] = [("1", None), ("2", "x"), (None, None), ("é", "4")]
    chunk = TokenChunk(("k1", "k2", "k3"), ("p", "q"), refs, tokens, payload)
    data = encode_chunk_columns(
        key_names=chunk.key_names,
        payload_columns=chunk.payload_columns,
        refs=refs,
        token_columns=[list(column) for column in zip(*tokens, strict=True)],
        payload=payload,
    )
    assert data == encode_chunk(chunk)
    assert decode_chunk(data) == chunk
    empty = TokenChunk((), (), refs, [()] * 4, [()] * 4)
    assert decode_chunk(encode_chunk(empty)) == empty


@pytest.mark.parametrize(
    "spec",
    [
        default_spec(),
        parse_spec(
            {
                "name": "transforms",
                "match_keys": [
                    {"name": "a", "fields": ["family_name:nysiis"]},
                    {"name": "b", "fields": ["given_name:metaphone", "date_of_birth:year"]},
                    {"name": "c", "fields": ["postcode:sector", "sex", "nhs_number"]},
                    {"name": "d", "fields": ["nhs_number"]},
                ],
            }
        ),
        parse_spec(
            {
                "name": "unordered",
                "match_keys": [
                    {"name": "a", "fields": ["{given_name, family_name}"]},
                    {"name": "b", "fields": ["{given_name:soundex, family_name:soundex}", "sex"]},
                    {
                        "name": "c",
                        "fields": [
                            "{given_name_key, family_name:nickname, sex}",
                            "date_of_birth",
                            "{postcode, postcode:district}",
                        ],
                    },
                    {"name": "d", "fields": ["given_name", "family_name"]},
                ],
            }
        ),
    ],
    ids=["default", "transforms", "unordered"],
)
def test_blocks_by_column_give_the_tokens_of_each_record(spec):
    mapping = load_mapping(DATA / "messy.toml")
    params = dataclasses.replace(_params(tuple(mapping.payload.columns)), spec=spec)
    tokeniser = Tokeniser(params)
    records = list(iter_records(DATA / "messy.csv", mapping, today=TODAY))
    chunk = decode_chunk(tokeniser.encode_rows([tokeniser.row(r) for r in records]).data)
    assert chunk.tokens == [tokeniser.tokens(r) for r in records]
    assert chunk.refs == [tokeniser.reference(r.local_id) for r in records]
    assert chunk.payload == [r.payload for r in records]


def test_blocks_by_column_leave_out_the_day_keys_on_an_assigned_birthday_as_row_by_row():
    """``encode_rows`` (what ``tokenise`` runs) and ``tokens_of_row`` agree when the
    extract's assigned birthdays are set: the day keys are absent on those days only."""
    mapping = load_mapping(DATA / "messy.toml")
    records = list(iter_records(DATA / "messy.csv", mapping, today=TODAY))
    days = frozenset(r.date_of_birth[5:] for r in records[:3] if r.date_of_birth)
    params = dataclasses.replace(
        _params(tuple(mapping.payload.columns)), spec=default_spec(), assigned_birthdays=days
    )
    tokeniser = Tokeniser(params)
    chunk = decode_chunk(tokeniser.encode_rows([tokeniser.row(r) for r in records]).data)
    assert chunk.tokens == [tokeniser.tokens(r) for r in records]
    day_key = [k.name for k in default_spec().match_keys].index("given_dob_postcode_sex")
    plain = Tokeniser(dataclasses.replace(params, assigned_birthdays=frozenset()))
    for record, row in zip(records, chunk.tokens, strict=True):
        on_day = record.date_of_birth is not None and record.date_of_birth[5:] in days
        assert (row[day_key] is None) == (on_day or plain.tokens(record)[day_key] is None)
    assert any(r.date_of_birth and r.date_of_birth[5:] in days for r in records)


def test_blocks_by_column_leave_out_the_day_blocks_on_an_assigned_birthday_as_row_by_row():
    """The evidence of ``encode_rows`` is that of ``chunk_of_rows`` on assigned birthdays
    too: no date-of-birth block there, the date compared by its year and month only."""
    mapping = load_mapping(DATA / "messy.toml")
    records = list(iter_records(DATA / "messy.csv", mapping, today=TODAY))
    days = frozenset(r.date_of_birth[5:] for r in records[:3] if r.date_of_birth)
    spec = default_spec("uk-health-probabilistic")
    params = dataclasses.replace(
        _params(tuple(mapping.payload.columns)), spec=spec, assigned_birthdays=days
    )
    tokeniser = Tokeniser(params)
    rows = [tokeniser.row(r) for r in records]
    by_column = decode_chunk(tokeniser.encode_rows(rows).data).evidence
    by_row = tokeniser.chunk_of_rows(rows).evidence
    assert by_column is not None and by_row is not None
    assert by_column.blocks == by_row.blocks
    assert by_column.cells() == by_row.cells()
    dob = [b.name for b in spec.blocking_keys].index("dob")
    on_day = [r.date_of_birth is not None and r.date_of_birth[5:] in days for r in records]
    assert any(on_day)
    assert all(
        blocks[dob] is None for blocks, day in zip(by_row.blocks, on_day, strict=True) if day
    )
