"""The link_quality column of cohorts and direct-care returns, over the real broker.

The release world's GP and hospital records of a person share every token (so the
strongest key, ``nhs``, links them). On top, a clinic dataset whose records of persons
20..29 carry another NHS token (they link by ``name_dob`` only) and whose record of person
12 carries only the NHS token, and a ward dataset whose record of person 12 carries only
the name token: the clinic's and the ward's records of person 12 are one person through
the GP record, but share no token with each other (``indirect``).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.link_quality import (
    INDIRECT,
    PROBABILITY_BANDS,
    SINGLE,
    link_qualities,
    probability_band,
)
from broker.store.linkage_store import LinkageStore
from keys.derive import RecordRef, Token
from keys.wire import DatasetKind
from tests.support.release_world import GP_PERSONS, HOSPITAL_PERSONS, World, build_world

NAME_ONLY = range(20, 30)
"""Persons whose clinic record shares only the name_dob token with their GP record."""
BRIDGED = 12
"""The person whose clinic and ward records share no token with each other."""


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> World:
    world = build_world(broker_server, tmp_path_factory.mktemp("quality"), seed=11)
    rng = random.Random(5)
    refs = {i: RecordRef(rng.randbytes(16)) for i in range(60)}
    world.declare(world.hosp_cred, "clinic", ["VISIT"], DatasetKind.RECORDS)
    world.declare(world.hosp_cred, "ward", ["BED"], DatasetKind.RECORDS)
    held = dict(world.tokens)
    for i in NAME_ONLY:
        world.tokens[i] = (Token(rng.randbytes(16)), held[i][1])
    world.tokens[BRIDGED] = (held[BRIDGED][0], None)  # type: ignore[assignment]
    clinic = [*NAME_ONLY, BRIDGED]
    world.upload(world.hosp_cred, "clinic", clinic, refs, [(f"v{i}",) for i in clinic], ["VISIT"])
    world.tokens[BRIDGED] = (None, held[BRIDGED][1])  # type: ignore[assignment]
    world.upload(world.hosp_cred, "ward", [BRIDGED], refs, [("b12",)], ["BED"])
    world.tokens.update(held)
    return world


def _cohort(world: World, agreement_id: str, require: str) -> dict:
    with world.broker.client(world.researcher_cred) as http:
        answer = http.post(f"/v1/agreements/{agreement_id}/cohort", json={"require": [require]})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_direct_care_rows_name_the_key_that_links_each_record(world):
    agreement = world.agreement(
        kind="direct_care",
        researchers=[],
        organisations=[world.gp],
        datasets=[
            {"org": world.gp, "name": "reg", "fields": ["LTC"]},
            {"org": world.hosp, "name": "clinic", "fields": ["VISIT"]},
        ],
    )
    with world.broker.client(world.gp_cred) as http:
        answer = http.get(f"/v1/agreements/{agreement.id}/linked")
    assert answer.status_code == 200, answer.text
    linked = answer.json()
    assert linked["columns"][-1] == "link_quality"
    person = {world.gp_refs[i].hex(): i for i in GP_PERSONS}
    quality = {person[row["ref"]]: row["values"][-1] for row in linked["rows"]}
    assert set(quality) == set(GP_PERSONS)
    for i, value in quality.items():
        # Only the agreement's datasets count: the hospital record (sharing nhs) is not in it.
        expected = "name_dob" if i in NAME_ONLY else "nhs" if i == BRIDGED else SINGLE
        assert value == expected, i


def test_a_cohort_row_carries_its_weakest_link(world):
    agreement = world.agreement(
        datasets=[
            {"org": world.gp, "name": "reg", "fields": ["LTC"]},
            {"org": world.hosp, "name": "pas", "fields": ["AE"]},
            {"org": world.hosp, "name": "clinic", "fields": ["VISIT"]},
        ],
    )
    cohort = _cohort(world, agreement.id, f"{world.gp}/reg")
    assert cohort["columns"][-1] == "link_quality"
    visit = cohort["columns"].index(f"{world.hosp}/clinic.VISIT")
    ae = cohort["columns"].index(f"{world.hosp}/pas.AE")
    counted: dict[str, int] = {}
    for row in cohort["rows"]:
        counted[row[-1]] = counted.get(row[-1], 0) + 1
        if row[visit] is not None and row[ae] is not None:
            # GP and hospital share nhs, the clinic only name_dob: the row is as weak as that.
            assert row[-1] == "name_dob"
    both = set(GP_PERSONS) & set(HOSPITAL_PERSONS)
    assert counted == {
        "name_dob": len(NAME_ONLY),
        "nhs": len(both - set(NAME_ONLY)) + 1,
        SINGLE: len(GP_PERSONS) - len(both) - 1,
    }


def test_records_joined_only_through_a_third_record_are_indirect(world):
    agreement = world.agreement(
        datasets=[
            {"org": world.hosp, "name": "clinic", "fields": ["VISIT"]},
            {"org": world.hosp, "name": "ward", "fields": ["BED"]},
        ],
    )
    rows = _cohort(world, agreement.id, f"{world.hosp}/clinic")["rows"]
    bridged = [r for r in rows if r[2] == "b12"]
    assert len(bridged) == 1 and bridged[0][1] == f"v{BRIDGED}"
    assert bridged[0][-1] == INDIRECT
    assert len(rows) == len(NAME_ONLY) + 1
    assert {r[-1] for r in rows if r[2] is None} == {SINGLE}


def test_a_probabilistic_link_gets_the_band_of_its_probability(world):
    linkage = LinkageStore(world.broker.runtime.store.redis, scope=world.domain)
    clinic = f"{world.hosp}/clinic"
    gp = f"{world.gp}/reg"
    records = [r for batch in linkage.iter_dataset_records(clinic) for r in batch]
    records += [r for batch in linkage.iter_dataset_records(gp) for r in batch]
    by_rid = {r.rid: r for r in records}
    probabilities = {rid: 0.97 for rid in by_rid}
    qualities = link_qualities(linkage, [gp, clinic], probabilities=probabilities)
    names = {d.dsn: d.id for d in linkage.datasets().values()}
    seen = {qualities.of(names[r.dsn], bytes(r.ref)) for r in by_rid.values()}
    assert seen == {"0.95-0.99", SINGLE}
    assert qualities.ranks["nhs"] < qualities.ranks["name_dob"] < qualities.ranks["p>=0.99"]


@given(st.floats(min_value=0.0, max_value=1.0, allow_nan=False))
def test_bands_cover_every_probability_best_first(p):
    band = probability_band(p)
    bounds = dict((name, low) for low, name in PROBABILITY_BANDS)
    assert p >= bounds[band]
    better = [low for low, name in PROBABILITY_BANDS if low > bounds[band]]
    assert all(p < low for low in better)


@pytest.mark.parametrize("p", [-0.01, 1.01, float("nan")])
def test_a_probability_outside_zero_to_one_is_refused(p):
    with pytest.raises(ValueError, match="between 0 and 1"):
        probability_band(p)
