"""Source-side opt-outs on the broker: the flag stored with each record, research releases
without those persons, direct care with them, stale checks refused, counts only kept."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from broker.agreements import Agreement
from broker.audit import read_audit
from broker.cli import cli as broker_cli
from broker.store.linkage_codec import decode_payload, encode_payload
from client_sdk.errors import BrokerCallError
from keys.batch import BatchManifest, BatchWriter
from keys.chunk import RESEARCH_RESTRICTED, TokenChunk
from keys.wire import BatchState
from tests.support.release_world import (
    GP_PERSONS,
    HOSPITAL_PERSONS,
    World,
    age_band,
    build_world,
    ltc,
    today,
)

BOTH = sorted(set(GP_PERSONS) & set(HOSPITAL_PERSONS))
RESTRICTED = [21, 22, 35, 44, 3]  # 3 is a GP-only person


@given(
    st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=5),
    st.booleans(),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_the_stored_payload_carries_the_flag_and_the_check_day(values, restricted, day) -> None:
    data = encode_payload(values, restricted=restricted, checked_day=day)
    assert decode_payload(data) == (tuple(values), restricted, day)
    if not restricted and not day:  # a record without source opt-outs: stored as before
        assert data.startswith(b"[")


def _upload_flagged(
    world: World, persons: list[int], *, checked: date | None, flags: bool = True
) -> BatchState:
    """Upload the GP's records of ``persons`` again, RESTRICTED flagged, checked on ``checked``."""
    path = world.tmp / f"{uuid.uuid4().hex}.tsb"
    columns = ("AGE_BAND", "LTC", "SECRET")
    with BatchWriter(path) as writer:
        writer.write_chunk(
            TokenChunk(
                ("nhs", "name_dob"),
                columns,
                [world.gp_refs[i] for i in persons],
                [world.tokens[i] for i in persons],
                [(age_band(i), ltc(i), f"secret-{i}") for i in persons],
                None,
                bytes(RESEARCH_RESTRICTED if i in RESTRICTED else 0 for i in persons)
                if flags
                else None,
            )
        )
        writer.finish(
            BatchManifest(
                batch_id=uuid.uuid4().hex,
                dataset="reg",
                domain=world.domain,
                key_version="v1",
                spec_hash="spec-test-1",
                match_keys=["nhs", "name_dob"],
                payload_columns=list(columns),
                record_count=len(persons),
                chunk_digests=writer.chunk_digests,
                created_at="2026-12-03T00:00:00+00:00",
                opt_out_checked=checked,
            )  # fmt: skip
        )
    with world.client(world.gp_cred) as client:
        return client.upload(path, poll=0.05, wait_timeout=120).state


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> World:
    world = build_world(broker_server, tmp_path_factory.mktemp("source-opt-outs"), seed=16)
    # The GP sends its records again, now with its opt-out check (held records: the flag
    # arrives with the payload).
    assert _upload_flagged(world, list(GP_PERSONS), checked=today()) is BatchState.LINKED
    return world


def _secrets(answer: dict, world: World) -> list[int]:
    column = answer["columns"].index(f"{world.gp}/reg.SECRET")
    return sorted(int(row[column].split("-")[1]) for row in answer["rows"])


def _research(world: World, **overrides: object) -> Agreement:
    datasets = [
        {"org": world.gp, "name": "reg", "fields": ["SECRET"]},
        {"org": world.hosp, "name": "pas", "fields": ["AE"]},
    ]
    return world.agreement(approve=True, datasets=datasets, **overrides)


def test_research_cohorts_leave_restricted_persons_out_and_count_them(world):
    agreement = _research(world)
    with world.broker.client(world.researcher_cred) as http:
        answer = http.post(f"/v1/agreements/{agreement.id}/cohort", json={})
    assert answer.status_code == 200, answer.text
    assert _secrets(answer.json(), world) == [i for i in BOTH if i not in RESTRICTED]
    entries = read_audit(world.broker.runtime.store, start=0, count=100_000)
    release = [e for e in entries if e.agreement == agreement.id and e.action == "release"]
    # Persons withheld: every restricted person with a record in the agreement's datasets.
    assert release[-1].counts["research_restricted"] == len(RESTRICTED)
    # Where opt-outs do not apply, nobody is withheld.
    open_agreement = _research(world, opt_outs_apply=False)
    with world.broker.client(world.researcher_cred) as http:
        answer = http.post(f"/v1/agreements/{open_agreement.id}/cohort", json={})
    assert _secrets(answer.json(), world) == BOTH


def test_aggregates_count_without_them(world):
    agreement = world.agreement(
        kind="research_aggregate",
        datasets=[{"org": world.gp, "name": "reg", "fields": ["LTC"]}],
        min_cell_size=2,
    )
    label = f"{world.gp}/reg.LTC"
    with world.broker.client(world.researcher_cred) as http:
        answer = http.post(f"/v1/agreements/{agreement.id}/aggregate", json={"by": [label]})
    assert answer.status_code == 200, answer.text
    got = {cell["values"][0]: cell["count"] for cell in answer.json()["cells"]}
    kept = [i for i in GP_PERSONS if i not in RESTRICTED]
    expected: dict[str | None, int] = {None: len(kept)}
    for i in kept:
        expected[ltc(i)] = expected.get(ltc(i), 0) + 1
    assert got == expected


def test_direct_care_keeps_them(world):
    agreement = world.agreement(
        kind="direct_care", researchers=[], organisations=[world.gp],
        datasets=[{"org": world.gp, "name": "reg", "fields": ["LTC"]},
                  {"org": world.hosp, "name": "pas", "fields": ["AE"]}],
    )  # fmt: skip
    with world.broker.client(world.gp_cred) as http:
        answer = http.get(f"/v1/agreements/{agreement.id}/linked")
    assert answer.status_code == 200, answer.text
    refs = {world.gp_refs[i].hex(): i for i in GP_PERSONS}
    assert sorted(refs[row["ref"]] for row in answer.json()["rows"]) == list(GP_PERSONS)


def test_a_stale_check_is_refused_for_research_in_one_line_and_a_fresh_one_releases(
    broker_server, tmp_path: Path
):
    world = build_world(broker_server, tmp_path, seed=17)
    stale = today() - timedelta(days=30)
    assert _upload_flagged(world, list(GP_PERSONS), checked=stale) is BatchState.LINKED
    agreement = _research(world)
    assert agreement.terms.opt_out_max_age_days == 21
    with world.broker.client(world.researcher_cred) as http:
        refused = http.post(f"/v1/agreements/{agreement.id}/cohort", json={})
        assert refused.status_code == 409
        body = refused.json()
        assert body["code"] == "opt_out_check_stale"
        assert "\n" not in body["message"]
        assert f"last checked on {stale.isoformat()}" in body["message"]
        assert f"{world.gp}/reg" in body["message"]
        # Not the stale check's agreement: a longer limit releases.
        longer = _research(world, opt_out_max_age_days=31)
        assert http.post(f"/v1/agreements/{longer.id}/cohort", json={}).status_code == 200
    # A new check, uploaded, releases under the first agreement.
    assert _upload_flagged(world, list(GP_PERSONS), checked=today()) is BatchState.LINKED
    with world.broker.client(world.researcher_cred) as http:
        answer = http.post(f"/v1/agreements/{agreement.id}/cohort", json={})
    assert answer.status_code == 200, answer.text
    assert _secrets(answer.json(), world) == [i for i in BOTH if i not in RESTRICTED]
    # A later batch without any source check clears the flags: the latest batch speaks.
    assert _upload_flagged(world, list(GP_PERSONS), checked=None, flags=False) is BatchState.LINKED
    with world.broker.client(world.researcher_cred) as http:
        answer = http.post(f"/v1/agreements/{agreement.id}/cohort", json={})
    assert _secrets(answer.json(), world) == BOTH


def test_a_checked_batch_whose_chunks_carry_no_flags_is_refused(broker_server, tmp_path):
    world = build_world(broker_server, tmp_path, seed=18)
    with pytest.raises(BrokerCallError, match="carries no flags"):
        _upload_flagged(world, [1, 2], checked=today(), flags=False)


def test_a_check_date_in_the_future_is_refused(broker_server, tmp_path):
    world = build_world(broker_server, tmp_path, seed=19)
    with pytest.raises(BrokerCallError, match="opt-out check date is in the future"):
        _upload_flagged(world, [1, 2], checked=today() + timedelta(days=2))


def test_the_register_and_the_dpia_pack_say_how_opt_outs_are_applied(world, tmp_path):
    research = _research(world, opt_out_max_age_days=14)
    care = world.agreement(
        kind="direct_care", researchers=[], organisations=[world.gp],
        datasets=[{"org": world.gp, "name": "reg", "fields": ["LTC"]}],
    )  # fmt: skip
    entries = httpx.get(world.broker.url + "/register.json").json()["agreements"]
    text = {e["agreement"]: e["opt_outs_text"] for e in entries}
    assert "National Data Opt-out" in text[research.id] and "14 days" in text[research.id]
    assert "Type 1" in text[research.id] and "nobody is given a list" in text[research.id]
    assert "do not apply to individual (direct) care" in text[care.id]
    csv_text = httpx.get(world.broker.url + "/register.csv").text
    assert "opt_outs_text" in csv_text.splitlines()[0]
    out = tmp_path / "dpia.md"
    result = CliRunner().invoke(
        broker_cli,
        ["admin", "agreement", "dpia", research.id, "--out", str(out)],
        env=dict(world.broker.env),
    )
    assert result.exit_code == 0, result.output
    pack = out.read_text()
    assert "research-restricted flag per record" in pack
    assert "checked more than 14 days before" in pack
