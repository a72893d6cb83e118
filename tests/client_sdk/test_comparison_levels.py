"""The comparison levels for digit errors, address typos and names in each other's fields.

Each level's values are defined so that two field values share one exactly when they are
related by the error the level is for (docs/token-format.md#block-and-comparison-tokens);
these properties check that, then the same through the tokeniser: the tokens of two
records agree at the level exactly where their values do, inside a block they share, and
the same values get unrelated tokens in another block.
"""

from __future__ import annotations

import tomllib

from hypothesis import given
from hypothesis import strategies as st

from client_sdk.normalise.names import NICKNAME_GROUPS, NICKNAMES
from client_sdk.normalise.nhs_number import is_valid_nhs_number
from client_sdk.normalise.transforms import (
    LEVEL_FUNCTIONS,
    any_given,
    either_order,
    either_order_soundex,
    one_digit_variants,
    one_word_variants,
    soundex,
    transpose_variants,
)
from client_sdk.record import NormalisedRecord
from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec, parse_spec
from tests.support.evidence_cells import Cells, evidence_cells

DIGITS = st.text(alphabet="0123456789", min_size=2, max_size=12)
WORDS = st.lists(st.sampled_from(["8", "18", "STANLEY", "STANELY", "STREET", "ROAD"]), max_size=5)
NAMES = st.sampled_from(["GABRIELLE", "LANGER", "LANGAR", "SMITH", "SMYTH", "JONES", "ZOE"])


def _shares(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return bool(set(a) & set(b))


def _adjacent_swaps(value: str) -> set[str]:
    out = set()
    for i in range(len(value) - 1):
        swapped = value[:i] + value[i + 1] + value[i] + value[i + 2 :]
        if swapped != value:
            out.add(swapped)
    return out


@given(DIGITS, st.data())
def test_transpose_shares_a_variant_exactly_with_one_adjacent_swap(value: str, data) -> None:
    other = data.draw(st.sampled_from(sorted(_adjacent_swaps(value) | {value, value[::-1]})))
    related = other in _adjacent_swaps(value)
    if other != value:
        assert _shares(transpose_variants(value), transpose_variants(other)) == related
    else:  # equal values share one iff some adjacent digits differ (exact comes first)
        assert _shares(transpose_variants(value), transpose_variants(other)) == bool(
            _adjacent_swaps(value)
        )


@given(DIGITS, DIGITS)
def test_transpose_of_unrelated_values_shares_nothing(a: str, b: str) -> None:
    if a != b and b not in _adjacent_swaps(a):
        assert not _shares(transpose_variants(a), transpose_variants(b))


def test_transpose_catches_what_one_digit_does_not() -> None:
    assert _shares(transpose_variants("2164"), transpose_variants("2614"))
    assert not _shares(one_digit_variants("2164"), one_digit_variants("2614"))
    assert _shares(transpose_variants("1984-07-03"), transpose_variants("1948-07-03"))
    # the dash is no digit: nothing moves across it
    assert transpose_variants("12-3") == ("*12-3",)
    assert transpose_variants("1" * 25) == ()


@given(WORDS, WORDS)
def test_one_word_shares_a_variant_exactly_when_one_word_or_the_spaces_differ(
    a: list[str], b: list[str]
):
    left, right = " ".join(a), " ".join(b)
    one_word = len(a) == len(b) >= 2 and sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    expected = one_word or "".join(a) == "".join(b)
    assert _shares(one_word_variants(left), one_word_variants(right)) == expected


def test_one_word_gives_a_single_word_only_itself() -> None:
    assert one_word_variants("STANLEY") == ("STANLEY",)
    assert one_word_variants("8 STANLEY STREET") == (
        "* STANLEY STREET",
        "8 * STREET",
        "8 STANLEY *",
        "8STANLEYSTREET",
    )


def test_one_word_agrees_on_words_split_or_run_together() -> None:
    for a, b in (
        ("37 KELLEWAY AVENUE", "37 KELLEWAYAVENUE"),
        ("50 JALANGA CRESCENT", "50 JALANGA C RESCENT"),
        ("TRAINER COURT", "TRAINERCOURT"),
    ):
        assert _shares(one_word_variants(a), one_word_variants(b))
    assert not _shares(one_word_variants("4 VAUGHAN GARDEN"), one_word_variants("47 VAUGHANGARDEN"))


@given(NAMES, NAMES, NAMES, NAMES)
def test_either_order_agrees_exactly_on_the_same_unordered_pair(
    a: str, b: str, c: str, d: str
) -> None:
    assert either_order(a, b) == either_order(b, a)
    assert (either_order(a, b) == either_order(c, d)) == ({a, b} == {c, d} and (a == b) == (c == d))
    codes = {soundex(a), soundex(b)}, {soundex(c), soundex(d)}
    if either_order_soundex(a, b) == either_order_soundex(c, d):
        assert codes[0] == codes[1]
    assert either_order_soundex(a, b) == either_order_soundex(b, a)


@given(st.integers(min_value=0, max_value=999_999_999), st.integers(0, 9), st.integers(0, 9))
def test_two_valid_nhs_numbers_never_differ_by_one_digit_or_one_adjacent_swap(
    base: int, position: int, digit: int
) -> None:
    """Why the shipped spec's NHS comparison has no `one_digit` or `transpose` level."""
    valid = [f"{base:09d}{c}" for c in "0123456789" if is_valid_nhs_number(f"{base:09d}{c}")]
    for number in valid:  # none when the check digit would be 10
        changed = number[:position] + str(digit) + number[position + 1 :]
        assert changed == number or not is_valid_nhs_number(changed)
        assert not any(is_valid_nhs_number(s) for s in _adjacent_swaps(number))


def test_the_shipped_nhs_comparison_has_only_the_exact_level() -> None:
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    (nhs,) = [c for c in spec.comparisons if c.field == "nhs_number"]
    assert nhs.levels == ("exact",)


# --- through the tokeniser ----------------------------------------------------------------

SPEC = parse_spec(
    tomllib.loads(
        """
name = "levels"
[[match_keys]]
name = "id_dob"
fields = ["other_id", "date_of_birth"]
[[blocking_keys]]
name = "names_phonetic"
fields = ["{given_name:soundex, family_name:soundex}"]
[[blocking_keys]]
name = "dob"
fields = ["date_of_birth"]
[[comparisons]]
name = "given"
field = "given_name"
with_field = "family_name"
levels = ["exact", "initial", "either_order", "either_order_soundex"]
[[comparisons]]
name = "middle"
field = "given_name"
with_field = "middle_names"
levels = ["exact", "any_given"]
[[comparisons]]
name = "nick"
field = "given_name"
levels = ["exact", "nickname"]
[[comparisons]]
name = "other_id"
field = "other_id"
levels = ["exact", "one_digit", "transpose"]
[[comparisons]]
name = "address"
field = "address_line"
levels = ["exact", "one_word"]
"""
    )
)


def _cells(*records: NormalisedRecord) -> list[Cells]:
    return evidence_cells(SPEC, *records)


def _record(local_id: str, **values: str | None) -> NormalisedRecord:
    base: dict[str, str | None] = {
        "given_name": "GABRIELLE",
        "given_name_key": "GABRIELLE",
        "family_name": "LANGER",
        "date_of_birth": "1984-07-03",
        "other_id": "2164035",
        "address_line": "8 STANLEY STREET",
    }
    base.update(values)
    return NormalisedRecord(line=0, local_id=local_id, **base)  # type: ignore[arg-type]


def _agree(a: dict[tuple[str, str, str], set[bytes]], b: dict[tuple[str, str, str], set[bytes]]):
    return {column for column in a if a[column] & b[column]}


def test_names_in_each_others_fields_agree_only_at_the_either_order_levels() -> None:
    plain, swapped, typo, other = _cells(
        _record("1"),
        _record("2", given_name="LANGER", family_name="GABRIELLE"),
        _record("3", given_name="LANGAR", family_name="GABRIELLE"),  # swapped with a typo
        _record("4", given_name="GABRIELLE", family_name="SMITH"),
    )
    agree = _agree(plain, swapped)
    for block in ("names_phonetic", "dob"):  # the unordered block holds both orders
        assert (block, "given", "either_order") in agree
        assert (block, "given", "exact") not in agree
        assert (block, "given", "initial") not in agree
    assert ("dob", "given", "either_order_soundex") in _agree(plain, typo)
    assert ("dob", "given", "either_order") not in _agree(plain, typo)
    # an ordinary pair with the same given name agrees at exact, never at either order
    agree = _agree(plain, other)
    assert ("dob", "given", "exact") in agree
    assert ("dob", "given", "either_order") not in agree


def test_a_record_without_the_second_name_has_no_either_order_token() -> None:
    (alone,) = _cells(_record("1", family_name=None))
    assert alone[("dob", "given", "exact")]
    assert not alone[("dob", "given", "either_order")]
    assert not alone[("dob", "given", "either_order_soundex")]


def test_transposed_ids_and_one_word_addresses_agree_at_their_levels() -> None:
    plain, swapped, moved = _cells(
        _record("1"),
        _record("2", other_id="2614035", address_line="8 STANELY STREET"),
        _record("3", other_id="2164053", address_line="9 STANLEY ROAD"),
    )
    agree = _agree(plain, swapped)
    assert ("dob", "other_id", "transpose") in agree
    assert ("dob", "other_id", "one_digit") not in agree
    assert ("dob", "address", "one_word") in agree
    agree = _agree(plain, moved)
    assert ("dob", "other_id", "transpose") in agree  # 35 / 53 at the end
    assert ("dob", "address", "one_word") not in agree  # two words differ


def test_the_same_names_get_unrelated_either_order_tokens_in_another_block() -> None:
    first, second = _cells(_record("1"), _record("2", date_of_birth="1990-01-01"))
    # one unordered name pair, so one names_phonetic block, but two date-of-birth blocks
    assert (
        first[("names_phonetic", "given", "either_order")]
        == second[("names_phonetic", "given", "either_order")]
    )
    assert first[("dob", "given", "either_order")].isdisjoint(
        second[("dob", "given", "either_order")]
    )
    assert first[("dob", "given", "either_order")].isdisjoint(
        first[("names_phonetic", "given", "either_order")]
    )


MIDDLES = st.lists(st.sampled_from(["AMINA", "MEGAN", "JOHN", "LUCY"]), max_size=2)


@given(NAMES, MIDDLES, NAMES, MIDDLES)
def test_any_given_agrees_exactly_when_the_records_have_a_name_in_common(
    a: str, a_middle: list[str], b: str, b_middle: list[str]
) -> None:
    left, right = any_given(a, " ".join(a_middle)), any_given(b, " ".join(b_middle))
    assert _shares(left, right) == bool({a, *a_middle} & {b, *b_middle})
    assert a in left  # the given name alone when there are no middle names


def test_someone_known_by_a_middle_name_agrees_at_any_given_only() -> None:
    plain, known_as, stranger = _cells(
        _record("1", given_name="AMINA", given_name_key="AMINA"),
        _record("2", given_name="MEGAN", given_name_key="MEGAN", middle_names="AMINA"),
        _record("3", given_name="MEGAN", given_name_key="MEGAN", middle_names="LUCY"),
    )
    agree = _agree(plain, known_as)
    assert ("dob", "middle", "any_given") in agree
    assert ("dob", "middle", "exact") not in agree
    assert ("dob", "middle", "any_given") not in _agree(plain, stranger)
    assert plain[("dob", "middle", "any_given")]  # no middle names: the given name alone


TABLE_NAMES = st.sampled_from(sorted({*NICKNAMES, *NICKNAME_GROUPS, "ZEBEDEE", "LIAM"}))


@given(TABLE_NAMES, TABLE_NAMES)
def test_the_nickname_level_agrees_exactly_when_two_names_share_a_group(a: str, b: str) -> None:
    """A name is in the group it is keyed to and in every group listing it as ``+NAME``."""

    def groups(name: str) -> set[str]:
        return {NICKNAMES.get(name, name), *NICKNAME_GROUPS.get(name, ())}

    nickname = LEVEL_FUNCTIONS["nickname"]
    assert _shares(nickname(a), nickname(b)) == bool(groups(a) & groups(b))
    assert len(nickname(a)) == len(groups(a))


def test_a_diminutive_of_two_names_agrees_with_both_at_the_nickname_level() -> None:
    jenny, jennifer, jane, jen = _cells(
        _record("1", given_name="JENNY", given_name_key="JANE"),
        _record("2", given_name="JENNIFER", given_name_key="JENNIFER"),
        _record("3", given_name="JANE", given_name_key="JANE"),
        _record("4", given_name="JEN", given_name_key="JENNIFER"),
    )
    for other in (jennifer, jane, jen):
        assert ("dob", "nick", "nickname") in _agree(jenny, other)
        assert ("dob", "nick", "exact") not in _agree(jenny, other)
    assert ("dob", "nick", "nickname") not in _agree(jennifer, jane)
    assert len(jenny[("dob", "nick", "nickname")]) == 2  # a token per group
    assert len(jennifer[("dob", "nick", "nickname")]) == 1
