"""The review list over the real broker: each organisation's doubts about its own records
(the world: tests/support/review_world.py)."""

from __future__ import annotations

import random

import pytest

from broker.audit import read_audit
from broker.matching import ScoredPair
from broker.review import REVIEW_ACTION, domain_review
from broker.store.linkage_store import LinkageStore
from keys.wire import Role
from keys.wire_review import Doubt, Outcome, ReviewOut
from tests.support.harness import unique
from tests.support.model_world import fitted_world
from tests.support.release_world import World
from tests.support.review_world import KEY_REF, TWIN_REFS, build_review_world


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> World:
    return build_review_world(broker_server, tmp_path_factory.mktemp("review"))


def _review(world: World, credential: str) -> ReviewOut:
    with world.broker.client(credential) as http:
        answer = http.get("/v1/review")
    assert answer.status_code == 200, answer.text
    return ReviewOut.model_validate_json(answer.content)


def _forbidden(world: World) -> set[str]:
    """Hex of every token of the world: none may appear in a review."""
    return {t.hex() for pair in world.tokens.values() for t in pair if t is not None}


def test_the_hospital_sees_its_records_conflicts_and_the_evidence(world):
    review = _review(world, world.hosp_cred)
    mine = {i.ref: i for i in review.items if i.dataset == "clinic"}
    key = mine[KEY_REF.hex()]
    assert key.doubt is Doubt.KEY_CONFLICT
    assert key.domain == world.domain
    assert key.other_dataset in {f"{world.gp}/reg", f"{world.hosp}/pas"}
    evidence = {e.evidence: (e.outcome, e.level) for e in key.evidence}
    # It followed NHS number to person 3; its name and date of birth agree with person 25.
    assert evidence == {
        "nhs": (Outcome.DISAGREES, "disagree"),
        "name_dob": (Outcome.AGREES, "token"),
    }
    twin = [i for i in review.items if i.doubt is Doubt.TWIN_CONFLICT and i.dataset == "clinic"]
    assert [t.ref for t in twin] == [TWIN_REFS[1].hex()]
    outcomes = {e.evidence: e.outcome for e in twin[0].evidence}
    assert outcomes["nhs"] is Outcome.NOT_COMPARED  # the record has no NHS token
    assert review.counts["items"] == len(review.items)
    assert review.counts[Doubt.KEY_CONFLICT.value] >= 1


def test_each_organisation_sees_only_its_own_references(world):
    gp_refs = {r.hex() for r in world.gp_refs.values()}
    hosp_refs = {r.hex() for r in world.hosp_refs.values()} | {
        r.hex() for r in (KEY_REF, *TWIN_REFS)
    }
    for credential, own, others in (
        (world.gp_cred, gp_refs, hosp_refs),
        (world.hosp_cred, hosp_refs, gp_refs),
    ):
        with world.broker.client(credential) as http:
            answer = http.get("/v1/review")
        review = ReviewOut.model_validate_json(answer.content)
        assert {i.ref for i in review.items} <= own
        for leaked in others | _forbidden(world):
            assert leaked not in answer.text
        assert "visit-" not in answer.text and "secret-" not in answer.text  # no payload
    gp_review = _review(world, world.gp_cred)
    assert all(i.dataset == "reg" for i in gp_review.items)


def test_the_operator_cannot_read_a_review_list_and_each_download_is_audited(world):
    admin = world.broker.add_identity(Role.ADMIN, unique("admin"))
    with world.broker.client(admin) as http:
        assert http.get("/v1/review").status_code == 403
    with world.broker.client(world.researcher_cred) as http:
        assert http.get("/v1/review").status_code == 403
    store = world.broker.runtime.store
    before = len(read_audit(store, start=0, count=1_000_000))
    review = _review(world, world.hosp_cred)
    entries = read_audit(store, start=before, count=1_000_000)
    audited = [e for e in entries if e.action == REVIEW_ACTION]
    assert len(audited) == 1
    assert audited[0].organisation == world.hosp
    assert audited[0].counts == review.counts


def test_possible_matches_name_their_comparisons_and_levels(world):
    fitted = fitted_world()
    linkage = LinkageStore(world.broker.runtime.store.redis, scope=world.domain)
    gp = next(iter(linkage.iter_dataset_records(f"{world.gp}/reg")))[0]
    pas = next(iter(linkage.iter_dataset_records(f"{world.hosp}/pas")))[0]
    example = random.Random(3).choice(fitted.pairs)
    pair = ScoredPair(gp.rid, pas.rid, example.block, example.agreement, example.match_weight, 0.7)
    own = {f"{world.gp}/reg": "reg"}
    items = domain_review(linkage, own, conflicts=[], possible=[pair], model=fitted.model)
    assert len(items) == 1
    item = items[0]
    assert (item.doubt, item.dataset, item.ref) == (Doubt.POSSIBLE_MATCH, "reg", gp.ref.hex())
    assert item.other_dataset == f"{world.hosp}/pas"
    assert item.probability == 0.7
    layout = fitted.model.layout.blocks[example.block]
    assert item.blocking_key == layout.name
    assert [e.evidence for e in item.evidence] == list(layout.comparisons)
    for e, levels, level in zip(item.evidence, layout.levels, example.agreement, strict=True):
        if level < 0:
            assert e.outcome is Outcome.NOT_COMPARED
        elif level == len(levels):
            assert (e.outcome, e.level) == (Outcome.DISAGREES, "disagree")
        else:
            assert (e.outcome, e.level) == (Outcome.AGREES, levels[level])
    # Without the model that scored them, pairs cannot be explained and are left out.
    assert domain_review(linkage, own, conflicts=[], possible=[pair]) == []
    # The other side's organisation sees the same pair from its own record.
    theirs = domain_review(
        linkage, {f"{world.hosp}/pas": "pas"}, conflicts=[], possible=[pair], model=fitted.model
    )
    assert [i.ref for i in theirs] == [pas.ref.hex()]
