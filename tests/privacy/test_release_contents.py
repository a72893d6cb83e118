"""Claim: a researcher sees only project pseudonyms and the released fields of agreements
they are named on while active; no release carries a token, another organisation's
reference, an internal id or a score."""

from __future__ import annotations

import base64

import pytest

from broker.agreements import revoke_agreement
from keys.wire import Role
from tests.support.harness import unique
from tests.support.release_world import GP_PERSONS, World, build_world


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> World:
    return build_world(broker_server, tmp_path_factory.mktemp("contents"))


def _forbidden_strings(world: World) -> set[str]:
    """Every token and reference of the world, in every encoding a leak would take."""
    found: set[str] = set()
    values: list[bytes] = [t for pair in world.tokens.values() for t in pair]
    values += list(world.gp_refs.values()) + list(world.hosp_refs.values())
    for value in values:
        found |= {
            value.hex(),
            value.hex().upper(),
            base64.b64encode(value).decode(),
            base64.urlsafe_b64encode(value).decode().rstrip("="),
            base64.b32encode(value).decode().rstrip("="),
        }
    return found


def test_cohort_and_aggregate_hold_nothing_but_pseudonyms_and_released_values(world):
    forbidden = _forbidden_strings(world)
    cohort_agreement = world.agreement()
    aggregate = world.agreement(
        kind="research_aggregate",
        datasets=[
            {"org": world.gp, "name": "reg", "fields": ["LTC"]},
            {"org": world.hosp, "name": "pas", "fields": []},
        ],
    )
    with world.broker.client(world.researcher_cred) as http:
        cohort = http.post(f"/v1/agreements/{cohort_agreement.id}/cohort", json={})
        counts = http.post(
            f"/v1/agreements/{aggregate.id}/aggregate", json={"by": [f"{world.gp}/reg.LTC"]}
        )
    for answer in (cohort, counts):
        assert answer.status_code == 200
        assert not any(f in answer.text for f in forbidden)
        assert "secret-" not in answer.text  # a field the agreement does not release
        for word in ("person", "pid", "rid", "score", "token", "ref"):
            assert f'"{word}' not in answer.text.lower()
    body = cohort.json()
    assert set(body) == {"agreement", "columns", "rows"}
    assert body["columns"] == ["pseudonym", *world.terms().released_labels(), "link_quality"]
    # Internal person numbers are small integers: no cell is one.
    assert not any(row[0].isdigit() for row in body["rows"])


def test_direct_care_returns_only_the_requesters_own_references(world):
    forbidden = _forbidden_strings(world) - {r.hex() for r in world.gp_refs.values()}
    agreement = world.agreement(
        kind="direct_care",
        researchers=[],
        organisations=[world.gp],
        datasets=[
            {"org": world.gp, "name": "reg", "fields": []},
            {"org": world.hosp, "name": "pas", "fields": ["AE"]},
        ],
    )
    with world.broker.client(world.gp_cred) as http:
        answer = http.get(f"/v1/agreements/{agreement.id}/linked")
    assert answer.status_code == 200
    assert not any(f in answer.text for f in forbidden)
    assert {r["ref"] for r in answer.json()["rows"]} == {world.gp_refs[i].hex() for i in GP_PERSONS}


def test_researcher_sees_nothing_of_agreements_they_are_not_named_on_or_inactive(world):
    outsider = unique("res")
    outsider_cred = world.broker.add_identity(Role.RESEARCHER, outsider)
    agreement = world.agreement()
    draft = world.agreement(approve=False)
    with world.broker.client(outsider_cred) as http:
        assert http.get("/v1/agreements").json() == []
        for path in (f"/v1/agreements/{agreement.id}", f"/v1/agreements/{agreement.id}/cohort"):
            answer = http.post(path, json={}) if path.endswith("cohort") else http.get(path)
            assert answer.status_code == 403
            assert answer.json()["code"] == "not_found_or_forbidden"
    with world.broker.client(world.researcher_cred) as http:
        assert http.post(f"/v1/agreements/{draft.id}/cohort", json={}).status_code == 403
        revoke_agreement(world.broker.runtime.store, agreement.id, by="operator", role="operator")
        assert http.post(f"/v1/agreements/{agreement.id}/cohort", json={}).status_code == 403
