"""Threat model: comparison tokens are never global per-field tokens (docs/probabilistic.md).

- The same field value gives unrelated comparison tokens in two different blocks, so
  nobody holding the broker's data can count a field's frequency across blocks: checked
  on what the SDK emits (the encoded chunk), at every level of every comparison, across
  blocks of one blocking key and across blocking keys.
- Inside one block, no comparison token of the shipped spec is held by more records of a
  dataset than the evidence linter allows, on the synthetic generator's GP extract (one
  record per person) and hospital extract (several records per person).
- The linter refuses a comparison that would be too common inside its blocks, and a
  blocking key whose blocks are too large.
"""

from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk.mapping import load_mapping
from client_sdk.normalise.transforms import LEVEL_FUNCTIONS, PAIR_LEVEL_FUNCTIONS
from client_sdk.pipeline import iter_records
from client_sdk.record import NormalisedRecord
from client_sdk.speclint_evidence import DEFAULT_MAX_SHARED, lint_evidence
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.chunk import ChunkEvidence, decode_chunk
from keys.derive import DomainKey
from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec, parse_spec
from tessera_synth import generate

SPEC = default_spec(PROBABILISTIC_SPEC_NAME)


def _tokeniser() -> Tokeniser:
    return Tokeniser(
        TokeniseParams(
            spec=SPEC,
            domain_key=DomainKey(b"k" * 32),
            domain="privacy",
            key_version="v1",
            reference_secret=b"r" * 32,
            dataset="privacy",
        )
    )


@pytest.fixture(scope="module")
def extracts() -> dict[str, list[NormalisedRecord]]:
    """The synthetic generator's GP and hospital extracts, normalised."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = generate(Path(tmp), persons=1500, seed=5, practices=1, opt_out=False)
        return {
            kind: list(iter_records(dataset.path, load_mapping(dataset.mapping)))
            for kind in ("gp", "hospital")
            for dataset in summary.datasets
            if dataset.kind == kind
        }


@pytest.fixture(scope="module")
def synthetic(extracts: dict[str, list[NormalisedRecord]]) -> list[NormalisedRecord]:
    return extracts["gp"]


def _emitted(records: list[NormalisedRecord]) -> ChunkEvidence:
    """The evidence as the SDK emits it: encoded into a chunk, then decoded."""
    tokeniser = _tokeniser()
    evidence = decode_chunk(tokeniser.encode_rows([tokeniser.row(r) for r in records]).data)
    assert evidence.evidence is not None
    return evidence.evidence


@pytest.mark.parametrize("kind", ["gp", "hospital"])
def test_no_emitted_token_of_one_level_value_repeats_in_another_block(
    extracts: dict[str, list[NormalisedRecord]], kind: str
) -> None:
    records = extracts[kind]
    evidence = _emitted(records)
    # (comparison, level, level value) → (blocking key, block token) → its tokens there
    seen: dict[tuple[int, int, str], dict[tuple[int, bytes], set[bytes]]] = defaultdict(
        lambda: defaultdict(set)
    )
    for record, blocks, cells in zip(records, evidence.blocks, evidence.cells(), strict=True):
        for column, cell in zip(SPEC.evidence_columns, cells, strict=True):
            block = blocks[column.block]
            if block is None:  # no block value, so no comparison token under that key
                assert not cell
                continue
            comparison = SPEC.comparisons[column.comparison]
            value = getattr(record, comparison.field)
            level = comparison.levels[column.level]
            if level in PAIR_LEVEL_FUNCTIONS:  # two fields' values ("" for a missing second)
                other = getattr(record, str(comparison.with_field)) or ""
                values = PAIR_LEVEL_FUNCTIONS[level](value, other) if value else ()
            else:
                values = LEVEL_FUNCTIONS[level](value) if value else ()
            assert len(values) == len(cell), "one token per value of the level"
            for level_value, token in zip(values, cell, strict=True):
                seen[(column.comparison, column.level, level_value)][(column.block, block)].add(
                    token
                )
    compared = across_keys = 0
    for per_block in seen.values():
        owner: dict[bytes, tuple[int, bytes]] = {}
        for where, tokens in per_block.items():
            assert len(tokens) == 1, "one level value has one token inside its block"
            (only,) = tokens
            assert only not in owner, "a level value's token repeats in another block"
            owner[only] = where
        compared += len(per_block) - 1
        across_keys += len({key for key, _ in per_block}) > 1
    assert compared > 5000, "common level values must fall into many blocks"
    assert across_keys > 1000, "and under several blocking keys"


def _tokens_by_value(
    records: list[NormalisedRecord],
) -> dict[tuple[int, str], dict[bytes, set[bytes]]]:
    """(column, field value) → block token → the comparison tokens of that value there."""
    tokeniser = _tokeniser()
    chunk = tokeniser.chunk_of_rows([tokeniser.row(r) for r in records])
    assert chunk.evidence is not None
    out: dict[tuple[int, str], dict[bytes, set[bytes]]] = defaultdict(lambda: defaultdict(set))
    for record, blocks, cells in zip(
        records, chunk.evidence.blocks, chunk.evidence.cells(), strict=True
    ):
        for column, (spec_column, cell) in enumerate(
            zip(SPEC.evidence_columns, cells, strict=True)
        ):
            if not cell or spec_column.level != 0:  # the exact level: the value itself
                continue
            value = getattr(record, SPEC.comparisons[spec_column.comparison].field)
            block = blocks[spec_column.block]
            assert block is not None
            out[(column, value)][block].update(cell)
    return out


def test_the_same_value_in_two_blocks_never_has_the_same_token(
    synthetic: list[NormalisedRecord],
) -> None:
    by_value = _tokens_by_value(synthetic)
    compared = 0
    for per_block in by_value.values():
        seen: dict[bytes, bytes] = {}
        for block, tokens in per_block.items():
            assert len(tokens) == 1  # one value, one exact token inside its block
            (token,) = tokens
            assert token not in seen, "a comparison token repeats across blocks"
            seen[token] = block
        compared += len(per_block) - 1
    assert compared > 1000, "the extract must put common values into many blocks"


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(["WILLIAM", "AMELIA", "MUHAMMAD", "OLIVIA"]),
    st.dates().map(lambda d: d.isoformat()),
    st.dates().map(lambda d: d.isoformat()),
)
def test_one_given_name_under_two_dates_of_birth_gives_unrelated_tokens(
    name: str, first: str, second: str
) -> None:
    if first == second:
        return
    tokeniser = _tokeniser()
    records = [
        NormalisedRecord(0, "a", given_name=name, given_name_key=name, date_of_birth=first),
        NormalisedRecord(0, "b", given_name=name, given_name_key=name, date_of_birth=second),
    ]
    (_, cells_a), (_, cells_b) = (tokeniser.evidence(r) for r in records)
    tokens_a = {t for cell in cells_a for t in cell}
    tokens_b = {t for cell in cells_b for t in cell}
    assert tokens_a and tokens_b
    assert tokens_a.isdisjoint(tokens_b)


@pytest.mark.parametrize("kind", ["gp", "hospital"])
def test_no_comparison_token_is_shared_by_more_records_than_the_linter_allows(
    extracts: dict[str, list[NormalisedRecord]], kind: str
) -> None:
    records = extracts[kind]
    evidence = _emitted(records)
    holders: Counter[tuple[bytes, int, bytes]] = Counter()
    for blocks, cells in zip(evidence.blocks, evidence.cells(), strict=True):
        for column, (spec_column, cell) in enumerate(
            zip(SPEC.evidence_columns, cells, strict=True)
        ):
            block = blocks[spec_column.block]
            for token in set(cell):
                assert block is not None
                holders[(block, column, token)] += 1
    assert len(holders) > 10 * len(records), "every record carries many comparison tokens"
    assert max(holders.values()) <= DEFAULT_MAX_SHARED
    # the claim can fail: a sex token keyed without its block is held by half the extract
    sexes = Counter(r.sex for r in records if r.sex)
    assert max(sexes.values()) > DEFAULT_MAX_SHARED


def test_the_shipped_spec_passes_the_evidence_linter(synthetic: list[NormalisedRecord]) -> None:
    verdicts = lint_evidence(lambda: synthetic, SPEC)
    assert [v.name for v in verdicts] == [b.name for b in SPEC.blocking_keys] + [
        c.name for c in SPEC.comparisons
    ]
    assert all(v.verdict == "ok" for v in verdicts), [v.reason for v in verdicts]


def test_the_linter_refuses_large_blocks_and_common_comparison_values(
    synthetic: list[NormalisedRecord],
) -> None:
    loose = parse_spec(
        {
            "name": "loose",
            "match_keys": [{"name": "nhs", "fields": ["nhs_number"]}],
            "blocking_keys": [{"name": "sex", "fields": ["sex"]}],
            "comparisons": [
                {"name": "initial", "field": "given_name", "levels": ["initial"]},
                {"name": "nhs", "field": "nhs_number", "levels": ["exact"]},
            ],
        }
    )
    verdicts = {
        v.name: v for v in lint_evidence(lambda: synthetic, loose, max_block=500, max_shared=20)
    }
    assert verdicts["sex"].verdict == "refused"
    assert "largest block" in verdicts["sex"].reason
    assert verdicts["initial"].verdict == "refused"  # an initial is shared by many in a block
    assert verdicts["nhs"].verdict == "ok"  # a number by one record
    for verdict in verdicts.values():  # reasons carry counts, never a value
        assert not any(r.given_name and r.given_name in verdict.reason for r in synthetic[:50])


@pytest.mark.parametrize("max_shared", [1, 2, 100])
def test_the_linters_two_passes_find_what_counting_every_pair_finds(
    synthetic: list[NormalisedRecord], max_shared: int
) -> None:
    """The bounded-memory linter (blocks above ``max_shared`` counted only) gives the
    verdicts, and above the limit the counts, of counting every (block, value) pair."""
    tokeniser = Tokeniser(
        TokeniseParams(
            spec=SPEC,
            domain_key=DomainKey(bytes(32)),
            domain="lint",
            key_version="lint",
            reference_secret=bytes(32),
            dataset="lint",
        )
    )
    blocks: list[Counter[bytes]] = [Counter() for _ in SPEC.blocking_keys]
    shared: Counter[tuple[int, bytes, int, bytes]] = Counter()
    for record in synthetic:
        row = tokeniser.row(record)
        for j, value in enumerate(tokeniser.block_values_of_row(row)):
            if value is not None:
                blocks[j][value] += 1
                for column, digest in tokeniser.comparison_digests_of_row(row, j):
                    shared[(j, value, column, digest)] += 1
    most = [0] * len(SPEC.comparisons)
    for (_, _, column, _), count in shared.items():
        c = SPEC.evidence_columns[column].comparison
        most[c] = max(most[c], count)
    expected = [max(b.values()) for b in blocks] + most
    verdicts = lint_evidence(lambda: synthetic, SPEC, max_block=2, max_shared=max_shared)
    for verdict, exact in zip(verdicts, expected, strict=True):
        limit = 2 if verdict.kind == "blocking key" else max_shared
        assert (verdict.verdict == "refused") == (exact > limit), verdict
        if verdict.kind == "blocking key" or exact > max_shared:
            assert verdict.largest == exact, verdict
        else:
            assert exact <= verdict.largest <= max_shared, verdict
    # the extract's blocks hold two to four records (four: a household of one year
    # under postcode_year): at 1 and 2 both paths are taken
    assert max(expected) == 4
    refused = [v for v in verdicts if v.kind == "comparison" and v.verdict == "refused"]
    assert bool(refused) == (max_shared < 4)
