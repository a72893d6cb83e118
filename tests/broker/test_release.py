"""Cohorts and direct-care returns over the real broker, against the world's truth."""

from __future__ import annotations

import pytest

from broker.audit import read_audit
from keys.wire import BatchMode
from tests.support.release_world import (
    GP_PERSONS,
    HOSPITAL_PERSONS,
    World,
    admissions,
    ae,
    age_band,
    build_world,
    ltc,
)

BOTH = sorted(set(GP_PERSONS) & set(HOSPITAL_PERSONS))


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> World:
    return build_world(broker_server, tmp_path_factory.mktemp("release"))


def _cohort(world: World, agreement_id: str, body: dict | None = None) -> dict:
    with world.broker.client(world.researcher_cred) as http:
        answer = http.post(f"/v1/agreements/{agreement_id}/cohort", json=body or {})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _by_secret(cohort: dict, world: World) -> dict[int, list]:
    column = cohort["columns"].index(f"{world.gp}/reg.SECRET")
    return {int(row[column].split("-")[1]): row for row in cohort["rows"]}


def test_cohort_is_the_persons_in_both_datasets_with_only_released_fields(world):
    agreement = world.agreement()
    cohort = _cohort(world, agreement.id)
    gp, hosp = world.gp, world.hosp
    assert cohort["columns"] == [
        "pseudonym",
        f"{gp}/reg.AGE_BAND",
        f"{gp}/reg.LTC",
        f"{hosp}/pas.AE",
        "link_quality",
    ]
    assert len(cohort["rows"]) == len(BOTH)
    # Both records of each person share every token: the strongest match key linked them.
    expected = sorted((age_band(i), ltc(i), ae(i), "nhs") for i in BOTH)
    assert sorted(tuple(r[1:]) for r in cohort["rows"]) == expected
    pseudonyms = [r[0] for r in cohort["rows"]]
    assert len(set(pseudonyms)) == len(BOTH)
    assert all(len(p) == 26 and p.isalnum() and p.isupper() for p in pseudonyms)


def test_cohort_selection_by_dataset_and_predicates(world):
    agreement = world.agreement()
    gp, hosp = world.gp, world.hosp
    gp_only = _cohort(world, agreement.id, {"require": [f"{gp}/reg"]})
    assert len(gp_only["rows"]) == len(GP_PERSONS)
    ae_column = gp_only["columns"].index(f"{hosp}/pas.AE")
    assert sum(1 for r in gp_only["rows"] if r[ae_column] is None) == 20
    body = {
        "require": [f"{gp}/reg"],
        "where": [
            {"field": f"{hosp}/pas.AE", "op": "ge", "value": 3},
            {"field": f"{gp}/reg.AGE_BAND", "op": "in", "value": ["65-84", "85+"]},
        ],
        "select": [f"{hosp}/pas.AE"],
    }
    selected = _cohort(world, agreement.id, body)
    truth = [i for i in BOTH if int(ae(i)) >= 3 and age_band(i) in ("65-84", "85+")]
    assert selected["columns"] == ["pseudonym", f"{hosp}/pas.AE", "link_quality"]
    assert sorted(r[1] for r in selected["rows"]) == sorted(ae(i) for i in truth)
    absent = _cohort(
        world,
        agreement.id,
        {"require": [f"{gp}/reg"], "where": [{"field": f"{hosp}/pas.AE", "op": "absent"}]},
    )
    assert len(absent["rows"]) == 20


def test_same_agreement_gives_the_same_pseudonyms_in_random_order(world):
    agreement = world.agreement(
        datasets=[
            {"org": world.gp, "name": "reg", "fields": ["SECRET"]},
            {"org": world.hosp, "name": "pas", "fields": []},
        ]
    )
    first, second = _cohort(world, agreement.id), _cohort(world, agreement.id)
    a, b = _by_secret(first, world), _by_secret(second, world)
    assert {i: r[0] for i, r in a.items()} == {i: r[0] for i, r in b.items()}
    orders = [[r[0] for r in c["rows"]] for c in (first, second, _cohort(world, agreement.id))]
    assert len({tuple(o) for o in orders}) > 1  # 30! orders: equal thrice by chance never


def test_every_release_is_audited_with_counts_only(world):
    agreement = world.agreement()
    _cohort(world, agreement.id)
    store = world.broker.runtime.store
    entries = [e for e in read_audit(store, start=0, count=100_000) if e.agreement == agreement.id]
    release = [e for e in entries if e.action == "release"]
    assert len(release) == 1
    assert release[0].identity == world.researcher
    assert release[0].counts["rows"] == len(BOTH)


def test_direct_care_returns_each_practice_its_own_references_only(world):
    agreement = world.agreement(
        kind="direct_care",
        researchers=[],
        organisations=[world.gp],
        datasets=[
            {"org": world.gp, "name": "reg", "fields": ["LTC"]},
            {"org": world.hosp, "name": "pas", "fields": ["AE", "ADM"]},
        ],
    )
    assert agreement.opt_outs_apply is False
    with world.broker.client(world.gp_cred) as http:
        answer = http.get(f"/v1/agreements/{agreement.id}/linked")
    assert answer.status_code == 200, answer.text
    linked = answer.json()
    gp, hosp = world.gp, world.hosp
    assert linked["columns"] == [
        f"{gp}/reg.LTC",
        f"{hosp}/pas.AE",
        f"{hosp}/pas.ADM",
        "link_quality",
    ]
    refs = {world.gp_refs[i].hex(): i for i in GP_PERSONS}
    assert len(linked["rows"]) == len(GP_PERSONS)
    for row in linked["rows"]:
        i = refs[row["ref"]]
        assert row["dataset"] == "reg"
        if i in HOSPITAL_PERSONS:
            assert row["values"] == [ltc(i), ae(i), admissions(i), "nhs"]
        else:
            assert row["values"] == [ltc(i), None, None, "single"]
    hospital_refs = {r.hex() for r in world.hosp_refs.values()}
    assert not hospital_refs & set(answer.text.split('"'))
    # The hospital is not named: refused. A researcher cannot ask either.
    with world.broker.client(world.hosp_cred) as http:
        assert http.get(f"/v1/agreements/{agreement.id}/linked").status_code == 403
    with world.broker.client(world.researcher_cred) as http:
        assert http.get(f"/v1/agreements/{agreement.id}/linked").status_code == 403


def test_opt_out_and_retraction_take_effect_on_the_next_release(broker_server, tmp_path):
    world = build_world(broker_server, tmp_path, seed=11)
    research = world.agreement(
        datasets=[
            {"org": world.gp, "name": "reg", "fields": ["SECRET"]},
            {"org": world.hosp, "name": "pas", "fields": ["AE"]},
        ]
    )
    no_opt_outs = world.agreement(
        opt_outs_apply=False,
        datasets=[
            {"org": world.gp, "name": "reg", "fields": ["SECRET"]},
            {"org": world.hosp, "name": "pas", "fields": ["AE"]},
        ],
    )
    before = _by_secret(_cohort(world, research.id), world)
    assert sorted(before) == BOTH
    world.opt_out([25, 30])
    after = _by_secret(_cohort(world, research.id), world)
    assert sorted(after) == [i for i in BOTH if i not in (25, 30)]
    assert sorted(_by_secret(_cohort(world, no_opt_outs.id), world)) == BOTH
    # The hospital retracts person 40's record: 40 leaves the next cohort.
    world.upload(world.hosp_cred, "pas", [40], world.hosp_refs, [], [], mode=BatchMode.RETRACT)
    retracted = _by_secret(_cohort(world, research.id), world)
    assert sorted(retracted) == [i for i in BOTH if i not in (25, 30, 40)]
    # A correction (replace snapshot): person 41's A&E count changes everywhere.
    people = [i for i in HOSPITAL_PERSONS if i != 40]
    world.upload(
        world.hosp_cred,
        "pas",
        people,
        world.hosp_refs,
        [("99" if i == 41 else ae(i), admissions(i)) for i in people],
        ["AE", "ADM"],
        mode=BatchMode.REPLACE,
    )
    corrected = _by_secret(_cohort(world, research.id), world)
    assert corrected[41][2] == "99"
    assert sorted(corrected) == [i for i in BOTH if i not in (25, 30, 40)]
