"""Assigned dates of birth: a day the extract heaps birthdays on, measured from it, is not
a date the keys that rest on the day of birth are formed on (docs/linkage-measured-probabilistic.md,
"Hostels: wrong links, and assigned dates of birth")."""

from __future__ import annotations

import dataclasses
import random
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk.normalise.placeholders import rests_on_day_of_birth
from client_sdk.quality import assigned_birthdays
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import Tokeniser
from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec
from tests.support.evidence_cells import dob_agreement
from tests.support.tokenise_world import fixed_params

START = date(1940, 1, 1)
SPAN = (date(2020, 12, 31) - START).days


def _spread(count: int, rng: random.Random) -> list[str]:
    return [(START + timedelta(days=rng.randrange(SPAN))).isoformat() for _ in range(count)]


_seeds = st.integers(min_value=0, max_value=2**32)


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=2000, max_value=10_000), _seeds)
def test_an_extract_without_a_default_birthday_has_none(size, seed) -> None:
    assert assigned_birthdays(_spread(size, random.Random(seed))) == frozenset()


@settings(max_examples=20, deadline=None)
@given(
    st.integers(min_value=2000, max_value=10_000),
    st.floats(min_value=0.02, max_value=0.5),
    st.dates(min_value=date(2001, 1, 1), max_value=date(2001, 12, 31)),
    _seeds,
)
def test_a_day_the_system_wrote_for_unknown_birthdays_is_found(size, share, day, seed) -> None:
    """Any day, not a listed one: whatever the system's default, it is measured."""
    rng = random.Random(seed)
    dates = _spread(size, rng)
    heaped = int(size * share)
    dates += [
        date(rng.randrange(1950, 2010), day.month, day.day).isoformat() for _ in range(heaped)
    ]
    rng.shuffle(dates)
    found = assigned_birthdays(dates + [None] * 10)
    assert found == {f"{day.month:02d}-{day.day:02d}"}
    assert assigned_birthdays(reversed(dates)) == found  # the order of the rows is no matter


@pytest.mark.parametrize(
    ("key", "rests"),
    [
        (
            [("given_name_key", None), ("date_of_birth", None), ("postcode", None), ("sex", None)],
            True,
        ),
        ([("family_name", None), ("date_of_birth", "swap"), ("postcode", None)], True),
        ([("given_name_key", None), ("family_name", None), ("date_of_birth", None)], False),
        (
            [("given_name_key", "soundex"), ("family_name", "soundex"), ("date_of_birth", None)],
            False,
        ),
        ([("nhs_number", None), ("date_of_birth", None)], False),
        ([("other_id", None), ("date_of_birth", None)], False),
        ([("given_name_key", None), ("date_of_birth", "year"), ("postcode", None)], False),
        ([("nhs_number", None), ("family_name", "soundex"), ("given_name_key", "initial")], False),
    ],
)
def test_the_keys_that_rest_on_the_day_of_birth(key, rests) -> None:
    assert rests_on_day_of_birth(key) is rests


def test_the_shipped_specs_keep_every_key_but_the_one_without_a_family_name() -> None:
    for spec in (default_spec(), default_spec(PROBABILISTIC_SPEC_NAME)):
        resting = [
            k.name
            for k in spec.match_keys
            if rests_on_day_of_birth((f.field, f.transform) for f in k.leaves)
        ]
        assert resting == ["given_dob_postcode_sex"]


_names = st.sampled_from(["MOHAMMED", "IWAN", "AISHA", "FATIMA", "DAVID"])
_days = st.sampled_from(["01-01", "07-01", "03-14"])


@settings(max_examples=60, deadline=None)
@given(
    _names,
    st.sampled_from(["KHAN", "ALI", "JONES"]),
    st.integers(min_value=1950, max_value=2005),
    _days,
    st.sampled_from([None, "4003056116"]),
    st.frozensets(_days, max_size=2),
)
def test_an_assigned_birthday_removes_only_the_keys_that_rest_on_it(
    given_name, family, year, day, nhs, assigned
) -> None:
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    record = NormalisedRecord(
        line=2,
        local_id="L1",
        nhs_number=nhs,
        given_name=given_name,
        given_name_key=given_name,
        family_name=family,
        date_of_birth=f"{year}-{day}",
        sex="M",
        postcode="BD30 3PN",
    )
    params = dataclasses.replace(fixed_params("gp-a", ()), spec=spec)
    plain = Tokeniser(params)
    measured = Tokeniser(dataclasses.replace(params, assigned_birthdays=assigned))
    names = [k.name for k in spec.match_keys]
    before, after = plain.tokens(record), measured.tokens(record)
    for name, a, b in zip(names, before, after, strict=True):
        if name == "given_dob_postcode_sex" and day in assigned:
            assert a is not None and b is None
        else:
            assert a == b
    # the evidence: no date-of-birth block on the day, and the date compared by its year
    # and month and at its own year level only (docs/probabilistic.md, "Assigned dates of
    # birth")
    (blocks, cells), (day_blocks, day_cells) = plain.evidence(record), measured.evidence(record)
    if day not in assigned:
        assert (blocks, cells) == (day_blocks, day_cells)
        return
    block_names = [b.name for b in spec.blocking_keys]
    for name, block, day_block in zip(block_names, blocks, day_blocks, strict=True):
        assert day_block is None if name == "dob" else block == day_block
    for column, cell, day_cell in zip(spec.evidence_columns, cells, day_cells, strict=True):
        comparison = spec.comparisons[column.comparison]
        if block_names[column.block] == "dob":
            assert day_cell == ()
        elif comparison.field == "date_of_birth":
            level = comparison.levels[column.level]
            assert day_cell == (cell if level in ("year_month", "assigned_year") else ())
        else:
            assert cell == day_cell


@pytest.mark.parametrize(
    ("real", "other", "other_assigned", "level"),
    [
        ("2006-10-22", "2006-01-01", True, "assigned_year"),
        ("2006-10-22", "2006-03-05", False, "year"),
        ("2006-01-17", "2006-01-01", True, "year_month"),
        ("1975-10-22", "2006-01-01", True, "disagree"),
        ("2006-01-01", "2006-01-01", False, "exact"),
    ],
)
def test_an_assigned_birthday_agrees_with_its_year_at_a_level_of_its_own(
    real, other, other_assigned, level
) -> None:
    """A hospital that writes 1 January for an unknown birthday: its record agrees with the
    practice's real date of the same year at ``assigned_year``, which the model weighs on
    its own, not at ``year``, where a true pair's mistyped day and month and a stranger
    of the same year sit (docs/probabilistic.md, "Assigned dates of birth")."""
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    person = NormalisedRecord(
        line=2,
        local_id="L1",
        given_name="MOHAMMED",
        given_name_key="MOHAMMED",
        family_name="ROBERTS",
        date_of_birth=real,
        sex="M",
        postcode="B10 3JN",
    )
    gp = Tokeniser(dataclasses.replace(fixed_params("gp-a", ()), spec=spec))
    hospital = Tokeniser(
        dataclasses.replace(
            fixed_params("hospital-b", ()),
            spec=spec,
            assigned_birthdays=frozenset({"01-01"}) if other_assigned else frozenset(),
        )
    )
    pair = (gp.evidence(person), hospital.evidence(person._replace(date_of_birth=other)))
    assert dob_agreement(spec, "names_phonetic", *pair) == level
