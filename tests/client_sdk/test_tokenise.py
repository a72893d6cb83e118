"""Tokenisation: determinism, separation, missing values, workers, batch and local index."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk.local_index import LocalIndex
from client_sdk.normalise.names import nickname_key
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import EVIDENCE_CHUNK_RECORDS, TokeniseParams, Tokeniser
from client_sdk.tokenise_batch import chunk_records_for, tokenise_records, write_batch
from keys.batch import BatchReader
from keys.chunk import decode_chunk
from keys.derive import DomainKey
from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec, parse_spec
from tests.support.tokenise_world import fixed_params

SPEC = default_spec()
KEY = DomainKey(b"\x11" * 32)


def _params(**changes: object) -> TokeniseParams:
    base = fixed_params("gp-a", ("AE_12M",))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _people(n: int) -> list[NormalisedRecord]:
    given = ["WILLIAM", "MARY", "OLIVIA", "JAMES", "AMELIA", "GEORGE", "ZOE", "LUKASZ"]
    family = ["SMITH", "JONES", "OBRIEN", "SMITH JONES", "WOJCIK", "PATEL", "NGUYEN"]
    out = []
    for i in range(n):
        out.append(
            NormalisedRecord(
                line=i + 2,
                local_id=f"L{i:06d}",
                nhs_number=None if i % 5 == 0 else f"{9000000000 + i * 7919}",
                given_name=given[i % len(given)],
                given_name_key=given[i % len(given)],
                family_name=family[i % len(family)] + ("" if i < 7 else chr(65 + i % 26)),
                date_of_birth=f"{1930 + i % 80}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                sex="M" if i % 2 else "F",
                postcode=None if i % 11 == 0 else f"BA{1 + i % 20} {i % 10}AB",
                payload=(str(i % 4),),
            )
        )
    return out


PEOPLE = _people(300)


def _with(record: NormalisedRecord, **changes: object) -> NormalisedRecord:
    return record._replace(**changes)  # type: ignore[arg-type]


def _all_tokens(params: TokeniseParams, records: list[NormalisedRecord]) -> set[bytes]:
    tokeniser = Tokeniser(params)
    return {t for r in records for t in tokeniser.tokens(r) if t is not None}


def test_same_input_and_key_give_same_tokens() -> None:
    first = [Tokeniser(_params()).tokens(r) for r in PEOPLE]
    second = [Tokeniser(_params()).tokens(r) for r in PEOPLE]
    assert first == second
    assert all(len(t) == 16 for row in first for t in row if t is not None)


@pytest.mark.parametrize(
    "change",
    [
        {"domain_key": DomainKey(b"\x12" * 32)},
        {"domain": "other-health"},
        {"key_version": "v2"},
        {
            "spec": parse_spec(
                {
                    "name": "uk-health",
                    "match_keys": [
                        {"name": k.name, "fields": [f.label() for f in k.fields]}
                        for k in SPEC.match_keys[:-1]
                    ],
                }
            )
        },
    ],
    ids=["key", "domain", "version", "spec"],
)
def test_another_key_domain_version_or_spec_gives_disjoint_tokens(
    change: dict[str, object],
) -> None:
    base = _all_tokens(_params(), PEOPLE)
    other = _all_tokens(_params(**change), PEOPLE)
    assert base and other
    assert base.isdisjoint(other)


def test_match_keys_never_share_a_token() -> None:
    # Two keys over the same canonical values still give different tokens.
    spec = parse_spec(
        {
            "name": "two",
            "match_keys": [
                {"name": "a", "fields": ["family_name", "date_of_birth"]},
                {"name": "b", "fields": ["given_name", "date_of_birth"]},
            ],
        }
    )
    record = NormalisedRecord(
        line=2, local_id="x", given_name="SAM", family_name="SAM", date_of_birth="2000-01-01"
    )
    a, b = Tokeniser(_params(spec=spec)).tokens(record)
    assert a is not None and b is not None and a != b


def test_a_key_with_any_missing_field_has_no_token() -> None:
    tokeniser = Tokeniser(_params())
    full = PEOPLE[1]
    assert all(t is not None for t in tokeniser.tokens(full))
    for field in (
        "nhs_number",
        "given_name",
        "given_name_key",
        "family_name",
        "date_of_birth",
        "sex",
        "postcode",
    ):
        partial = _with(full, **{field: None})
        tokens = tokeniser.tokens(partial)
        for key, token in zip(SPEC.match_keys, tokens, strict=True):
            uses = any(f.field == field for f in key.leaves)
            assert (token is None) == uses, (field, key.name)


def test_empty_strings_and_emptied_transforms_are_missing() -> None:
    tokeniser = Tokeniser(_params())
    record = _with(PEOPLE[1], given_name="", family_name="--", postcode="")
    tokens = dict(zip(SPEC.key_names, tokeniser.tokens(record), strict=True))
    assert tokens["nhs_dob"] is not None
    # family name "--" has no letters: its phonetic code is missing, so no token
    assert tokens["nhs_family_initial"] is None
    assert tokens["given_family_dob_postcode"] is None


@settings(max_examples=50, deadline=None)
@given(
    day=st.integers(1, 12),
    month=st.integers(1, 12),
    year=st.integers(1900, 2024),
)
def test_swapped_day_and_month_share_the_swap_key(day: int, month: int, year: int) -> None:
    tokeniser = Tokeniser(_params())
    index = SPEC.key_names.index("family_given_swapdob_postcode")
    a = _with(PEOPLE[1], date_of_birth=f"{year}-{month:02d}-{day:02d}")
    b = _with(PEOPLE[1], date_of_birth=f"{year}-{day:02d}-{month:02d}")
    ta, tb = tokeniser.tokens(a), tokeniser.tokens(b)
    assert ta[index] == tb[index]
    assert (ta[0] == tb[0]) == (day == month)


NAMES_KEY = SPEC.key_names.index("given_family_dob_postcode")
# The ordered name key: the same names, date of birth and postcode district.
ORDERED_KEY = SPEC.key_names.index("given_family_dob_district")
GIVEN_NAMES = ["WILLIAM", "BILL", "MARY", "ZOE", "SEAN", "JAMES", "LUKASZ"]
FAMILY_NAMES = ["SMITH", "OBRIEN", "NGUYEN", "WOJCIK", "JAMES", "SMITH JONES"]


def _named(given: str, family: str, dob: str = "1984-07-03") -> NormalisedRecord:
    # given_name_key as normalisation sets it: the nickname key of the given name.
    key = nickname_key(given)
    return _with(
        PEOPLE[1], given_name=given, given_name_key=key, family_name=family, date_of_birth=dob
    )


@settings(max_examples=60, deadline=None)
@given(given=st.sampled_from(GIVEN_NAMES), family=st.sampled_from(FAMILY_NAMES))
def test_names_swapped_between_fields_share_the_unordered_key(given: str, family: str) -> None:
    tokeniser = Tokeniser(_params())
    straight = tokeniser.tokens(_named(given, family))
    swapped = tokeniser.tokens(_named(family, given))
    assert straight[NAMES_KEY] is not None
    assert straight[NAMES_KEY] == swapped[NAMES_KEY]
    # The ordered name keys tell the two apart (unless both names are one).
    assert (straight[ORDERED_KEY] == swapped[ORDERED_KEY]) == (
        nickname_key(given) == nickname_key(family)
    )


@settings(max_examples=60, deadline=None)
@given(
    first=st.tuples(st.sampled_from(GIVEN_NAMES), st.sampled_from(FAMILY_NAMES)),
    second=st.tuples(st.sampled_from(GIVEN_NAMES), st.sampled_from(FAMILY_NAMES)),
    swap=st.booleans(),
)
def test_the_unordered_key_differs_for_different_names(
    first: tuple[str, str], second: tuple[str, str], swap: bool
) -> None:
    tokeniser = Tokeniser(_params())
    a = tokeniser.tokens(_named(*first))[NAMES_KEY]
    b = tokeniser.tokens(_named(*(second[::-1] if swap else second)))[NAMES_KEY]
    same_names = sorted(map(nickname_key, first)) == sorted(map(nickname_key, second))
    assert (a == b) == same_names
    other_day = tokeniser.tokens(_named(*first, dob="1984-07-04"))[NAMES_KEY]
    assert other_day != a


def test_a_nickname_entered_as_the_family_name_still_matches() -> None:
    tokeniser = Tokeniser(_params())
    straight = tokeniser.tokens(_named("WILLIAM", "SMITH"))
    swapped = tokeniser.tokens(_named("SMITH", "BILL"))  # BILL in the family name field
    assert straight[NAMES_KEY] == swapped[NAMES_KEY]


def test_workers_give_the_same_chunks_as_one_process() -> None:
    one = list(tokenise_records(PEOPLE, _params(), chunk_records=64, workers=1))
    two = list(tokenise_records(PEOPLE, _params(), chunk_records=64, workers=2))
    assert [c.data for c in one] == [c.data for c in two]
    assert sum(len(c) for c in one) == len(PEOPLE)
    assert [c.local_ids for c in one] == [c.local_ids for c in two]


def test_write_batch_and_local_index(tmp_path: Path) -> None:
    orgdir = tmp_path / "org"
    orgdir.mkdir()
    out = tmp_path / "gp.batch"
    with LocalIndex.open(orgdir, "gp-a") as index:
        summary = write_batch(
            PEOPLE,
            _params(),
            out=out,
            index=index,
            quality=lambda: {"grade": "Gold"},
            chunk_records=100,
            batch_id="b1",
        )
    reader = BatchReader(out)
    manifest = reader.manifest
    assert manifest == summary.manifest
    assert manifest.record_count == len(PEOPLE)
    assert manifest.spec_hash == SPEC.content_hash
    assert manifest.match_keys == SPEC.key_names
    assert (manifest.domain, manifest.key_version, manifest.dataset) == (
        "test-health",
        "v1",
        "gp-a",
    )
    assert manifest.payload_columns == ["AE_12M"]
    assert manifest.quality == {"grade": "Gold"}
    chunks = list(reader.chunks())
    assert [len(c) for c in chunks] == [100, 100, 100]
    tokeniser = Tokeniser(_params())
    refs = [r for c in chunks for r in c.refs]
    assert chunks[0].tokens[1] == tokeniser.tokens(PEOPLE[1])
    assert chunks[0].payload[3] == ("3",)
    assert sum(summary.token_counts.values()) == sum(
        t is not None for c in chunks for row in c.tokens for t in row
    )
    # The local index resolves every reference, and only on this disk, mode 0600.
    with LocalIndex.open(orgdir, "gp-a") as index:
        found = index.lookup(refs + [b"\x00" * 16])  # type: ignore[list-item]
        assert len(index) == len(PEOPLE)
    assert [found[r] for r in refs] == [p.local_id for p in PEOPLE]
    assert len(found) == len(PEOPLE)
    assert stat.S_IMODE(os.stat(index.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(index.path.parent).st_mode) == 0o700
    assert decode_chunk(next(reader.raw_chunks())).key_names == tuple(SPEC.key_names)


def test_a_failed_batch_leaves_no_file_and_no_index_rows(tmp_path: Path) -> None:
    def broken() -> Iterator[NormalisedRecord]:
        yield from PEOPLE[:150]
        raise RuntimeError("reader failed")

    orgdir = tmp_path / "org"
    orgdir.mkdir()
    out = tmp_path / "gp.batch"
    with pytest.raises(RuntimeError), LocalIndex.open(orgdir, "gp-a") as index:
        write_batch(broken(), _params(), out=out, index=index, chunk_records=100)
    assert not out.exists()
    assert not list(tmp_path.glob("*.partial"))
    with LocalIndex.open(orgdir, "gp-a") as index:
        assert len(index) == 0


def test_evidence_is_the_same_row_by_row_and_column_by_column_and_survives_the_chunk() -> None:
    params = _params(spec=default_spec(PROBABILISTIC_SPEC_NAME))
    tokeniser = Tokeniser(params)
    records = _people(60)
    records[3] = _with(records[3], nhs_number=None, postcode=None)  # some blocks absent
    rows = [tokeniser.row(r) for r in records]
    by_row = tokeniser.chunk_of_rows(rows).evidence
    decoded = decode_chunk(tokeniser.encode_rows(rows).data).evidence
    assert by_row is not None and decoded is not None
    assert decoded == by_row
    assert decoded.blocks[3][1] is None  # no NHS number: no `nhs` block
    cells = decoded.cells()
    assert len(cells) == 60 and all(len(c) == len(params.spec.evidence_columns) for c in cells)
    assert tokeniser.evidence(records[5]) == (decoded.blocks[5], cells[5])


def test_a_spec_without_blocking_keys_writes_the_old_chunk_format() -> None:
    spec = default_spec(PROBABILISTIC_SPEC_NAME).model_copy(
        update={"blocking_keys": (), "comparisons": ()}
    )
    tokeniser = Tokeniser(_params(spec=spec))
    data = tokeniser.encode_rows([tokeniser.row(r) for r in _people(5)]).data
    chunk = decode_chunk(data)
    assert chunk.evidence is None
    assert tokeniser.evidence(_people(1)[0]) == ((), ())


def test_the_default_spec_emits_no_evidence_until_the_broker_links_on_it() -> None:
    tokeniser = Tokeniser(_params())
    chunk = decode_chunk(tokeniser.encode_rows([tokeniser.row(r) for r in _people(5)]).data)
    assert chunk.evidence is None


def test_chunks_with_the_evidence_keep_well_under_a_requests_limit(tmp_path: Path) -> None:
    """The shipped probabilistic spec's chunks are a quarter of the match-key spec's, so a
    chunk of long names stays far below the broker's default limit on a request body (one
    chunk a request): at 20,000 records it came near 16 MiB and broke the demo's upload."""
    from broker.config import BrokerSettings

    limit = BrokerSettings.model_fields["max_chunk_bytes"].default
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    long_names = [
        _with(p, given_name=f"{p.given_name}ALEXANDRINA", family_name=f"{p.family_name}WORTHINGTON")
        for p in _people(EVIDENCE_CHUNK_RECORDS + 1)
    ]
    assert chunk_records_for(spec) == EVIDENCE_CHUNK_RECORDS < chunk_records_for(SPEC)
    out, orgdir = tmp_path / "evidence.batch", tmp_path / "org"
    orgdir.mkdir()
    with LocalIndex.open(orgdir, "gp") as index:
        write_batch(long_names, _params(spec=spec), out=out, index=index)
    reader = BatchReader(out)
    sizes = [len(chunk) for chunk in reader.raw_chunks()]
    assert [len(c.refs) for c in reader.chunks()] == [EVIDENCE_CHUNK_RECORDS, 1]
    assert max(sizes) < limit / 2
