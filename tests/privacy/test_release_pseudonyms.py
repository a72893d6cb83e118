"""Claim: project pseudonyms of the same persons under two agreements share nothing, and
one agreement gives each person the same pseudonym every time."""

from __future__ import annotations

import os

import pytest

from broker.release import PSEUDONYM_COLUMN
from keys.derive import derive_pseudonym
from tests.support.release_world import GP_PERSONS, HOSPITAL_PERSONS, World, build_world

BOTH = sorted(set(GP_PERSONS) & set(HOSPITAL_PERSONS))


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> World:
    return build_world(broker_server, tmp_path_factory.mktemp("pseudonyms"))


def _pseudonyms(world: World, agreement_id: str) -> dict[int, str]:
    with world.broker.client(world.researcher_cred) as http:
        cohort = http.post(f"/v1/agreements/{agreement_id}/cohort", json={}).json()
    assert cohort["columns"][0] == PSEUDONYM_COLUMN
    secret = cohort["columns"].index(f"{world.gp}/reg.SECRET")
    return {int(row[secret].split("-")[1]): row[0] for row in cohort["rows"]}


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_two_agreements_give_unrelated_pseudonyms_and_one_gives_stable_ones(world):
    datasets = [
        {"org": world.gp, "name": "reg", "fields": ["SECRET"]},
        {"org": world.hosp, "name": "pas", "fields": []},
    ]
    first = world.agreement(datasets=datasets)
    second = world.agreement(datasets=datasets)
    a, b = _pseudonyms(world, first.id), _pseudonyms(world, second.id)
    assert sorted(a) == sorted(b) == BOTH
    assert not set(a.values()) & set(b.values())
    # No common prefix pattern: matching persons agree on leading characters no more than
    # strangers would (1 in 32 per character); 30 persons share about one character in all.
    assert sum(_common_prefix(a[i], b[i]) for i in BOTH) <= 6
    assert not any(a[i][-4:] == b[i][-4:] for i in BOTH)
    assert _pseudonyms(world, first.id) == a


def test_the_pseudonym_key_is_per_agreement():
    master = os.urandom(32)
    one = [derive_pseudonym(master, agreement_id="dsa-1", person_id=f"d:{i}") for i in range(200)]
    two = [derive_pseudonym(master, agreement_id="dsa-2", person_id=f"d:{i}") for i in range(200)]
    assert not set(one) & set(two)
    assert sum(_common_prefix(x, y) for x, y in zip(one, two, strict=True)) < 30
