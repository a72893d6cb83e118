"""The ``joined`` and ``joined_middle`` name levels: a name written with or without a space.

Extracts write one person's names ANNE MARIE, ANNE-MARIE or ANNEMARIE (the normaliser makes
the second word of a given-name field a middle name), RO NAN or RONAN (a stray space), SMITH
JONES, SMITH-JONES or SMITHJONES. ``joined`` (one field: the family name) is the value
without its spaces; ``joined_middle`` (given name, ``with_field = "middle_names"``) the
given name, and the given name joined to the first middle name. These properties check the
level values, then the same through the normaliser and the tokeniser inside a block and
across blocks, and that the layout keeps the spec's order of levels when a two-field level
stands before one-field ones.
"""

from __future__ import annotations

import tomllib

from hypothesis import given
from hypothesis import strategies as st

from client_sdk.normalise.defect import Defect
from client_sdk.normalise.names import check_family_name, check_given_names
from client_sdk.normalise.transforms import (
    LEVEL_FUNCTIONS,
    PAIR_LEVEL_FUNCTIONS,
    joined,
    joined_middle,
)
from client_sdk.record import NormalisedRecord
from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec, parse_spec
from tests.support.evidence_cells import Cells, evidence_cells

WORD = st.text(alphabet="ABEJNORS", min_size=1, max_size=6)
NAMES = st.lists(WORD, min_size=1, max_size=4).map(" ".join)
MIDDLES = st.lists(WORD, max_size=3).map(" ".join)


def _family_shares(a: str, b: str) -> bool:
    return bool(set(joined(a)) & set(joined(b)))


def _given_shares(a: tuple[str, str], b: tuple[str, str]) -> bool:
    return bool(set(joined_middle(*a)) & set(joined_middle(*b)))


@given(NAMES, NAMES)
def test_joined_is_symmetric_and_agrees_exactly_when_only_spaces_differ(a: str, b: str) -> None:
    assert _family_shares(a, b) == _family_shares(b, a)
    assert _family_shares(a, b) == (a.replace(" ", "") == b.replace(" ", ""))


@given(NAMES)
def test_a_family_name_agrees_with_itself_and_with_its_spaces_taken_out(name: str) -> None:
    assert _family_shares(name, name)
    assert _family_shares(name, name.replace(" ", ""))
    assert LEVEL_FUNCTIONS["joined"](name) == joined(name) == (name.replace(" ", ""),)


@given(NAMES, st.integers(min_value=0))
def test_a_family_name_agrees_with_a_stray_space_put_in(name: str, at: int) -> None:
    word = name.replace(" ", "")
    cut = 1 + at % len(word) if len(word) > 1 else 1
    assert _family_shares(word, f"{word[:cut]} {word[cut:]}".strip())


@given(WORD, MIDDLES, WORD, MIDDLES)
def test_joined_middle_is_symmetric(g1: str, m1: str, g2: str, m2: str) -> None:
    assert _given_shares((g1, m1), (g2, m2)) == _given_shares((g2, m2), (g1, m1))


@given(WORD, MIDDLES)
def test_given_names_agree_with_themselves(given_name: str, middle: str) -> None:
    assert _given_shares((given_name, middle), (given_name, middle))
    assert PAIR_LEVEL_FUNCTIONS["joined_middle"](given_name, middle) == joined_middle(
        given_name, middle
    )


@given(WORD, WORD, MIDDLES)
def test_a_given_name_written_as_one_word_agrees_with_its_spaced_form(
    first: str, second: str, rest: str
) -> None:
    """ANNE MARIE (given ANNE, middle MARIE …) against ANNEMARIE, with or without the rest
    of the middle names on either side."""
    spaced = (first, f"{second} {rest}".strip())
    assert _given_shares(spaced, (first + second, ""))
    assert _given_shares(spaced, (first + second, rest))


@given(WORD, MIDDLES, WORD, MIDDLES)
def test_joined_middle_agrees_exactly_on_the_same_given_name_spelt_joined(
    g1: str, m1: str, g2: str, m2: str
) -> None:
    """The same given name; one's given name the other's given and first middle name as
    one word; or both given and first middle names the same letters: never one name in
    common elsewhere (that is ``any_given``)."""
    f1, f2 = m1.split()[:1], m2.split()[:1]
    j1, j2 = g1 + "".join(f1), g2 + "".join(f2)
    expected = g1 == g2 or j1 == g2 or g1 == j2 or (bool(f1) and bool(f2) and j1 == j2)
    assert _given_shares((g1, m1), (g2, m2)) == expected


def _given_names(raw: str) -> tuple[str, str]:
    """A given-name field as the normaliser splits it: given name, middle names."""
    result = check_given_names(raw)
    assert not isinstance(result, Defect)
    return result[0], result[1] or ""


def _family_name(raw: str) -> str:
    result = check_family_name(raw)
    assert isinstance(result, str)
    return result


def test_the_names_real_extracts_write_agree_once_normalised() -> None:
    pairs = [_given_names(raw) for raw in ("Anne Marie", "Anne-Marie", "ANNEMARIE", "anne marie")]
    assert pairs[0] == pairs[1] == ("ANNE", "MARIE")
    for a in pairs:
        for b in pairs:
            assert _given_shares(a, b)
    assert _given_names("Ro Nan") == ("RO", "NAN")
    assert _given_shares(_given_names("Ro Nan"), _given_names("Ronan"))
    families = [_family_name(raw) for raw in ("Smith Jones", "Smith-Jones", "SMITHJONES")]
    for x in families:
        for y in families:
            assert _family_shares(x, y)
    # particles are joined by the normaliser: DE SOUZA is DESOUZA already
    assert _family_name("De Souza") == _family_name("DESOUZA") == "DESOUZA"


def test_other_names_do_not_agree() -> None:
    assert not _family_shares("SMITH JONES", "SMITH BROWN")  # one_word's SMITH * would
    assert not _family_shares("SMITH JONES", "JONES SMITH")
    assert not _given_shares(("ANNE", "MARIE"), ("MARIE", ""))
    assert not _given_shares(("ANNE", "MARIE"), ("ANNEMARY", ""))
    assert not _given_shares(("ANNE", ""), ("ANNEMARIE", ""))  # only initial agrees there


def test_the_shipped_spec_places_the_levels_where_their_strength_belongs() -> None:
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    comparisons = {c.name: c for c in spec.comparisons}
    given_levels = comparisons["given"].levels
    assert comparisons["given"].with_field == "middle_names"
    assert given_levels.index("one_edit") + 1 == given_levels.index("joined_middle")
    # before initial, which ANNE and ANNEMARIE always share: after it, it could never be
    # the strongest level that agrees
    assert given_levels.index("joined_middle") < given_levels.index("initial")
    family_levels = comparisons["family"].levels
    assert family_levels[:3] == ("exact", "joined", "one_edit")


# --- through the tokeniser ----------------------------------------------------------------

SPEC = parse_spec(
    tomllib.loads(
        """
name = "joined"
[[match_keys]]
name = "dob_postcode"
fields = ["date_of_birth", "postcode"]
[[blocking_keys]]
name = "dob"
fields = ["date_of_birth"]
[[blocking_keys]]
name = "postcode"
fields = ["postcode"]
[[comparisons]]
name = "given"
field = "given_name"
with_field = "middle_names"
levels = ["exact", "one_edit", "joined_middle", "nysiis", "initial", "any_given"]
[[comparisons]]
name = "family"
field = "family_name"
levels = ["exact", "joined", "one_edit"]
"""
    )
)


def _cells(*records: NormalisedRecord) -> list[Cells]:
    return evidence_cells(SPEC, *records, seed=0x53)


def _record(local_id: str, **values: str | None) -> NormalisedRecord:
    base: dict[str, str | None] = {
        "given_name": "ANNE",
        "given_name_key": "ANNE",
        "middle_names": "MARIE",
        "family_name": "SMITH JONES",
        "date_of_birth": "1971-04-09",
        "postcode": "TA1 4DY",
    }
    base.update(values)
    return NormalisedRecord(line=0, local_id=local_id, **base)  # type: ignore[arg-type]


def _agree(a: Cells, b: Cells) -> set[tuple[str, str, str]]:
    return {column for column in a if a[column] & b[column]}


def test_anne_marie_and_annemarie_agree_at_the_joined_levels_inside_a_shared_block() -> None:
    spaced, one_word, moved, other = _cells(
        _record("1"),
        _record(
            "2",
            given_name="ANNEMARIE",
            given_name_key="ANNEMARIE",
            middle_names=None,
            family_name="SMITHJONES",
        ),
        _record(
            "3",
            given_name="ANNEMARIE",
            given_name_key="ANNEMARIE",
            middle_names=None,
            postcode="BS1 1AA",
        ),
        _record("4", given_name="ANNABEL", given_name_key="ANNABEL", family_name="SMITH BROWN"),
    )
    agree = _agree(spaced, one_word)
    for block in ("dob", "postcode"):
        assert (block, "given", "joined_middle") in agree
        assert (block, "given", "exact") not in agree
        assert (block, "given", "one_edit") not in agree
        assert (block, "family", "joined") in agree
        assert (block, "family", "exact") not in agree
    strangers = _agree(spaced, other)
    assert ("dob", "given", "joined_middle") not in strangers
    assert ("dob", "family", "joined") not in strangers
    # one pair of values in two postcode blocks: unrelated tokens (nothing across blocks)
    assert one_word[("postcode", "given", "joined_middle")].isdisjoint(
        moved[("postcode", "given", "joined_middle")]
    )
    assert one_word[("dob", "given", "joined_middle")] == moved[("dob", "given", "joined_middle")]
    assert spaced[("dob", "given", "joined_middle")].isdisjoint(
        spaced[("postcode", "given", "joined_middle")]
    )
    assert spaced[("dob", "family", "joined")].isdisjoint(spaced[("postcode", "family", "joined")])
    # the token counts: ANNE and ANNEMARIE; ANNEMARIE alone without middle names
    assert len(spaced[("dob", "given", "joined_middle")]) == 2
    assert len(one_word[("dob", "given", "joined_middle")]) == 1


def test_the_levels_after_a_two_field_level_keep_their_place() -> None:
    """nysiis, initial and any_given after joined_middle: each column holds its own
    level's tokens (derived from the pair of values, in the spec's order)."""
    plain, initial_only, by_middle = _cells(
        _record("1"),
        _record("2", given_name="ALICE", given_name_key="ALICE", middle_names=None),
        _record("3", given_name="MARIE", given_name_key="MARIE", middle_names=None),
    )
    assert _agree(plain, initial_only) & {
        ("dob", "given", level) for level in SPEC.comparisons[0].levels
    } == {("dob", "given", "initial")}
    assert ("dob", "given", "any_given") in _agree(plain, by_middle)
    assert ("dob", "given", "initial") not in _agree(plain, by_middle)
    # a record without a given name has no tokens at any of its levels
    (missing,) = _cells(_record("5", given_name=None, given_name_key=None))
    assert all(not missing[("dob", "given", level)] for level in SPEC.comparisons[0].levels)
