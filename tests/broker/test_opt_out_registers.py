"""Opt-out registers: an organisation cannot make one; the operator can, audited and public."""

from __future__ import annotations

import subprocess
import sys

import httpx

from broker.audit import read_audit
from keys.wire import DatasetDeclaration, DatasetKind
from tests.support.release_world import GP_PERSONS, HOSPITAL_PERSONS, World, build_world

BOTH = sorted(set(GP_PERSONS) & set(HOSPITAL_PERSONS))


def _cohort_persons(world: World, agreement_id: str) -> list[int]:
    with world.broker.client(world.researcher_cred) as http:
        answer = http.post(f"/v1/agreements/{agreement_id}/cohort", json={})
    assert answer.status_code == 200, answer.text
    cohort = answer.json()
    column = cohort["columns"].index(f"{world.gp}/reg.SECRET")
    return sorted(int(row[column].split("-")[1]) for row in cohort["rows"])


def _research(world: World):
    return world.agreement(
        datasets=[
            {"org": world.gp, "name": "reg", "fields": ["SECRET"]},
            {"org": world.hosp, "name": "pas", "fields": ["AE"]},
        ]
    )


def _operator(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from broker.cli import main; main()", "admin", *args],
        env=world.broker.admin_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_organisation_cannot_declare_its_dataset_an_opt_out_register(broker_server, tmp_path):
    world = build_world(broker_server, tmp_path, seed=21, designate_register=False)
    research = _research(world)
    declaration = DatasetDeclaration(
        name="my-register",
        one_record_per_person=True,
        domain=world.domain,
        spec_hash="spec-test-1",
        key_version="v1",
        match_keys=["nhs", "name_dob"],
        kind=DatasetKind.OPT_OUT,
    )
    with world.broker.client(world.hosp_cred) as http:
        answer = http.post("/v1/datasets", json=declaration.model_dump(mode="json"))
        assert answer.status_code == 403, answer.text
        assert answer.json()["code"] == "wrong_role"
        assert "only the broker operator" in answer.json()["message"]
        assert http.get("/v1/datasets/my-register").status_code == 403
    # Its own tokens-only dataset, uploaded as the register would be, removes no one.
    world.opt_out([25, 30])
    assert _cohort_persons(world, research.id) == BOTH


def test_the_operator_designates_a_register_audited_and_on_the_public_register(
    broker_server, tmp_path
):
    world = build_world(broker_server, tmp_path, seed=22, designate_register=False)
    research = _research(world)
    world.opt_out([25, 30])
    assert _cohort_persons(world, research.id) == BOTH
    body = "NHS England: National Data Opt-out"
    done = _operator(world, "opt-out-register", "declare", f"{world.ndop}/register", "--body", body)
    assert done.returncode == 0, done.stderr
    assert _cohort_persons(world, research.id) == [i for i in BOTH if i not in (25, 30)]

    entries = read_audit(world.broker.runtime.store, start=0, count=100_000)
    declared = [e for e in entries if e.action == "opt_out_register.declare"]
    assert [(e.role, e.dataset, e.organisation) for e in declared if world.ndop in e.dataset] == [
        ("operator", f"{world.ndop}/register", world.ndop)
    ]
    public = httpx.get(world.broker.url + "/register.json").json()["opt_out_registers"]
    assert {"dataset": f"{world.ndop}/register", "body": body} in [
        {k: r[k] for k in ("dataset", "body")} for r in public
    ]
    page = httpx.get(world.broker.url + "/register").text
    assert body in page and f"{world.ndop}/register" in page
    listed = _operator(world, "opt-out-register", "list")
    assert f"{world.ndop}/register\t" in listed.stdout

    # A dataset with payload is no register; another body cannot take this one over.
    with_payload = _operator(
        world, "opt-out-register", "declare", f"{world.gp}/reg", "--body", "Someone"
    )
    assert with_payload.returncode != 0 and "tokens only" in with_payload.stderr
    assert len(with_payload.stderr.strip().splitlines()) == 1
    other = _operator(
        world, "opt-out-register", "declare", f"{world.ndop}/register", "--body", "Another body"
    )
    assert other.returncode != 0 and "another body" in other.stderr
