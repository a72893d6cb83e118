"""The ``one_edit`` name level: names one typing error apart share a value, and a token.

A typo that changes a name's phonetic codes (MIA and MXA, JONES and JONBS) is the miss
the probabilistic stage's diagnosis found most often
(docs/linkage-measured-probabilistic.md). The level's values are the name and its
one-character deletions; these properties check them against
``jellyfish``'s Damerau–Levenshtein distance (an independent implementation), then the
same through the tokeniser inside a block and across blocks.
"""

from __future__ import annotations

import tomllib

import jellyfish
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.normalise.transforms import LEVEL_FUNCTIONS, one_edit_variants
from client_sdk.record import NormalisedRecord
from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec, parse_spec
from tests.support.evidence_cells import Cells, evidence_cells

NAMES = st.text(alphabet="ABCE ", min_size=1, max_size=10).map(str.strip).filter(bool)
LETTERS = "ABCEZ"


def _shares(a: str, b: str) -> bool:
    return bool(set(one_edit_variants(a)) & set(one_edit_variants(b)))


def _one_edit_neighbours(name: str) -> set[str]:
    """Every name one substitution, insertion, deletion or adjacent swap from ``name``."""
    out = set()
    for i in range(len(name) + 1):
        for ch in LETTERS:
            out.add(name[:i] + ch + name[i:])
            if i < len(name):
                out.add(name[:i] + ch + name[i + 1 :])
        if i < len(name):
            out.add(name[:i] + name[i + 1 :])
        if i < len(name) - 1:
            out.add(name[:i] + name[i + 1] + name[i] + name[i + 2 :])
    out.discard(name)
    return {n for n in out if n}


@given(NAMES, st.data())
def test_names_one_edit_apart_share_a_value(name: str, data) -> None:
    other = data.draw(st.sampled_from(sorted(_one_edit_neighbours(name))))
    if len(name) == len(other) == 1:  # two initials: their shared deletion is empty
        assert not _shares(name, other)
    else:
        assert _shares(name, other)


@given(NAMES, NAMES)
def test_names_that_share_a_value_are_at_most_two_edits_apart(a: str, b: str) -> None:
    distance = jellyfish.damerau_levenshtein_distance(a, b)
    if _shares(a, b):
        assert distance <= 2
        if distance == 2:  # only one deletion in each, at different places
            assert len(a) == len(b)
    elif not len(a) == len(b) == 1:
        assert distance >= 2


@given(NAMES)
def test_the_values_are_the_name_and_one_per_run_of_equal_characters(name: str) -> None:
    """What a record's count of tokens at the level tells: the runs in the name (about its
    length; docs/probabilistic.md, the threat model), never which letters."""
    runs = 1 + sum(1 for x, y in zip(name, name[1:], strict=False) if x != y)
    values = one_edit_variants(name)
    assert values[0] == name
    assert len(values) == len(set(values)) == 1 + (runs if len(name) > 1 else 0)
    assert LEVEL_FUNCTIONS["one_edit"](name) == values


def test_the_typos_the_diagnosis_found_agree_and_other_names_do_not() -> None:
    for a, b in (("MIA", "MXA"), ("OSCAR", "OSACR"), ("JONES", "JONBS"), ("HELEN", "HELEW")):
        assert _shares(a, b)
    assert _shares("ELIZABETH", "ELIZABET")  # a deletion
    assert _shares("JESSICA", "JESSSICA")  # an insertion, in a run
    for a, b in (("AMINA", "MEGAN"), ("SMITH", "SMYTHE"), ("ALI", "ABDUL")):
        assert not _shares(a, b)
    assert one_edit_variants("A" * 25) == ("A" * 25,)


def test_the_shipped_spec_compares_both_names_at_one_edit() -> None:
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    levels = {c.field: c.levels for c in spec.comparisons}
    assert "one_edit" in levels["given_name"]
    assert "one_edit" in levels["family_name"]


# --- through the tokeniser ----------------------------------------------------------------

SPEC = parse_spec(
    tomllib.loads(
        """
name = "one-edit"
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
levels = ["exact", "one_edit", "nysiis"]
[[comparisons]]
name = "family"
field = "family_name"
levels = ["exact", "one_edit"]
"""
    )
)


def _cells(*records: NormalisedRecord) -> list[Cells]:
    return evidence_cells(SPEC, *records, seed=0x41)


def _record(local_id: str, **values: str) -> NormalisedRecord:
    base = {
        "given_name": "OSCAR",
        "given_name_key": "OSCAR",
        "family_name": "DAVIES",
        "date_of_birth": "1965-12-12",
        "postcode": "TA15 5YU",
    }
    base.update(values)
    return NormalisedRecord(line=0, local_id=local_id, **base)  # type: ignore[arg-type]


def test_a_typo_agrees_at_one_edit_inside_a_shared_block_only() -> None:
    plain, typo, moved, other = _cells(
        _record("1"),
        _record("2", given_name="OSACR", given_name_key="OSACR", family_name="DAVEIS"),
        _record("3", given_name="OSACR", given_name_key="OSACR", postcode="BS1 1AA"),
        _record("4", given_name="OLIVER", given_name_key="OLIVER"),
    )
    agree = {column for column in plain if plain[column] & typo[column]}
    for block in ("dob", "postcode"):
        assert (block, "given", "one_edit") in agree
        assert (block, "given", "exact") not in agree
        assert (block, "given", "nysiis") not in agree  # the typo changes the code
        assert (block, "family", "one_edit") in agree
    assert ("dob", "given", "one_edit") not in {
        column for column in plain if plain[column] & other[column]
    }
    # one value pair in two postcode blocks: unrelated tokens (nothing across blocks)
    assert typo[("postcode", "given", "one_edit")].isdisjoint(
        moved[("postcode", "given", "one_edit")]
    )
    assert typo[("dob", "given", "one_edit")] == moved[("dob", "given", "one_edit")]
    assert plain[("dob", "given", "one_edit")].isdisjoint(plain[("postcode", "given", "one_edit")])
    # what the column's token count shows: the values' count (docs/probabilistic.md)
    assert len(plain[("dob", "given", "one_edit")]) == len(one_edit_variants("OSCAR")) == 6
