"""`tessera-broker admin` and `tessera-sdk` as subprocesses against a real broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from broker.linkage import Linker
from broker.store.linkage_store import LinkageStore
from client_sdk.client import BrokerClient
from keys.batch import BatchReader
from tests.support.harness import make_batch, random_refs, random_tokens, unique

BIN = Path(sys.executable).parent


def run(tool: str, *args: str, env: dict[str, str], check: bool = True):
    result = subprocess.run(
        [str(BIN / tool), *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def admin_org(broker, org: str) -> str:
    result = run("tessera-broker", "admin", "org", "add", org, env=broker.admin_env())
    credential = result.stdout.strip()
    assert credential.startswith("tsk_") and "\n" not in credential
    assert credential not in result.stderr
    return credential


def records_held(broker, domain: str, dataset_id: str) -> int:
    report = Linker(LinkageStore(broker.runtime.store.redis, scope=domain)).report()
    return next((d.records for d in report.datasets if d.id == dataset_id), 0)


def write_batch(path: Path, dataset: str, domain: str, n: int, *, seed: int = 7, chunk=20):
    refs = random_refs(n, seed=seed)
    return make_batch(
        path,
        dataset=dataset,
        refs=refs,
        tokens=random_tokens(n, 2, seed=seed),
        chunk_size=chunk,
        domain=domain,
    )


def test_admin_declare_upload_and_link_through_the_clis(broker_server, tmp_path):
    org, domain, dataset = unique("gp"), unique("dom"), unique("regs")
    credential = admin_org(broker_server, org)
    env = broker_server.sdk_env(credential)
    batch = tmp_path / "gp.tsb"
    write_batch(batch, dataset, domain, 90)
    declared = run(
        "tessera-sdk",
        "dataset",
        "declare",
        dataset,
        "--from-batch",
        str(batch),
        "--one-record-per-person",
        env=env,
    )
    assert domain in declared.stdout
    uploaded = run("tessera-sdk", "upload", str(batch), "--dataset", dataset, env=env)
    assert "90 records" in uploaded.stdout and "linked" in uploaded.stdout
    assert records_held(broker_server, domain, f"{org}/{dataset}") == 90
    again = run("tessera-sdk", "upload", str(batch), env=env)
    assert "linked" in again.stdout
    assert records_held(broker_server, domain, f"{org}/{dataset}") == 90


def test_interrupted_upload_resumes_and_stores_each_record_once(broker_server, tmp_path):
    org, domain, dataset = unique("gp"), unique("dom"), unique("regs")
    credential = admin_org(broker_server, org)
    env = broker_server.sdk_env(credential)
    batch = tmp_path / "gp.tsb"
    manifest = write_batch(batch, dataset, domain, 100, chunk=10)
    run("tessera-sdk", "dataset", "declare", dataset, "--from-batch", str(batch),
        "--many-records-per-person", env=env)  # fmt: skip
    with BrokerClient(broker_server.url, credential) as client:
        client.open_batch(dataset, manifest)
        for index, data in enumerate(BatchReader(batch).raw_chunks()):
            if index in (0, 1, 2, 5):
                client.put_chunk(dataset, manifest.batch_id, index, data)
        halfway = client.batch_status(dataset, manifest.batch_id)
    assert halfway.received == [0, 1, 2, 5]
    assert records_held(broker_server, domain, f"{org}/{dataset}") == 0
    run("tessera-sdk", "upload", str(batch), env=env)
    with BrokerClient(broker_server.url, credential) as client:
        status = client.batch_status(dataset, manifest.batch_id)
    assert status.records_received == 100
    assert records_held(broker_server, domain, f"{org}/{dataset}") == 100


def test_researcher_credential_cannot_upload(broker_server, tmp_path):
    name = unique("researcher")
    result = run(
        "tessera-broker", "admin", "researcher", "add", name, env=broker_server.admin_env()
    )
    env = broker_server.sdk_env(result.stdout.strip())
    batch = tmp_path / "r.tsb"
    write_batch(batch, "anything", "dom", 5)
    refused = run("tessera-sdk", "upload", str(batch), env=env, check=False)
    assert refused.returncode == 14
    assert "wrong_role" in refused.stderr


def test_revoke_and_reissue_through_the_admin_cli(broker_server):
    org, credential = broker_server.add_org()
    admin_env = broker_server.admin_env()
    run("tessera-broker", "admin", "credential", "revoke", org, env=admin_env)
    refused = run("tessera-sdk", "whoami", env=broker_server.sdk_env(credential), check=False)
    assert refused.returncode == 14 and "unauthorised" in refused.stderr
    reissued = run("tessera-broker", "admin", "credential", "issue", org, env=admin_env)
    fresh = reissued.stdout.strip()
    with broker_server.client(fresh) as http:
        assert http.get("/v1/whoami").json()["name"] == org
    with broker_server.client(credential) as http:
        assert http.get("/v1/whoami").status_code == 401
    listed = run("tessera-broker", "admin", "identity", "list", env=admin_env).stdout
    assert org in listed and fresh not in listed and credential not in listed
    assert fresh not in reissued.stderr
    assert credential not in broker_server.log_text() and fresh not in broker_server.log_text()


def _declare(env, dataset: str, batch: Path, *flags: str, check: bool = True):
    return run("tessera-sdk", "dataset", "declare", dataset, "--from-batch", str(batch),
               "--one-record-per-person", *flags, env=env, check=check)  # fmt: skip


def test_a_short_replace_is_shown_and_refused_until_confirmed(broker_server, tmp_path):
    org, domain, dataset = unique("gp"), unique("dom"), unique("regs")
    credential = admin_org(broker_server, org)
    env = broker_server.sdk_env(credential)
    full, short, nearly = tmp_path / "full.tsb", tmp_path / "short.tsb", tmp_path / "nearly.tsb"
    refs, tokens = random_refs(200, seed=3), random_tokens(200, 2, seed=3)
    make_batch(full, dataset=dataset, refs=refs, tokens=tokens, domain=domain)
    short_manifest = make_batch(
        short, dataset=dataset, refs=refs[:50], tokens=tokens[:50], domain=domain
    )
    make_batch(nearly, dataset=dataset, refs=refs[:185], tokens=tokens[:185], domain=domain)
    _declare(env, dataset, full)
    run("tessera-sdk", "upload", str(full), env=env)
    ds_id = f"{org}/{dataset}"

    refused = run("tessera-sdk", "upload", str(short), "--mode", "replace", env=env, check=False)
    assert refused.returncode == 14
    assert "replace: 200 records held now, 50 in this batch, 150 removed (75%)" in refused.stderr
    assert "--confirm-replace" in refused.stderr and "nothing was changed" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert records_held(broker_server, domain, ds_id) == 200

    # A script on the HTTP API meets the same rule: the commit itself is refused.
    path = f"/v1/datasets/{dataset}/batches/{short_manifest.batch_id}"
    with broker_server.client(credential) as http:
        preview = http.get(path + "/replace-preview").json()
        assert (preview["held"], preview["incoming"], preview["removed"]) == (200, 50, 150)
        assert preview["needs_confirmation"] is True
        answer = http.post(path + "/commit")
        assert answer.status_code == 409
        assert answer.json()["code"] == "replace_not_confirmed"
        assert http.get(path).json()["state"] == "receiving"
    assert records_held(broker_server, domain, ds_id) == 200

    # Run again without the mode it was first sent in: the message names the mode.
    again = run("tessera-sdk", "upload", str(short), env=env, check=False)
    assert again.returncode == 14
    assert "first sent in mode 'replace'" in again.stderr and "--mode replace" in again.stderr

    confirmed = run("tessera-sdk", "upload", str(short), "--mode", "replace",
                    "--confirm-replace", env=env)  # fmt: skip
    assert "150 removed" in confirmed.stderr and "linked" in confirmed.stdout
    assert records_held(broker_server, domain, ds_id) == 50

    # Back to 200 (a new batch), then a replace that removes 15 of 200 (7.5%) goes through.
    again_full = tmp_path / "full-again.tsb"
    make_batch(again_full, dataset=dataset, refs=refs, tokens=tokens, domain=domain)
    run("tessera-sdk", "upload", str(again_full), "--mode", "replace", env=env)
    assert records_held(broker_server, domain, ds_id) == 200
    small = run("tessera-sdk", "upload", str(nearly), "--mode", "replace", env=env)
    assert "200 records held now, 185 in this batch, 15 removed (8%)" in small.stderr
    assert records_held(broker_server, domain, ds_id) == 185


def test_a_batch_made_for_another_organisation_is_refused(broker_server, tmp_path):
    gp, hospital, domain = unique("gp"), unique("hospital"), unique("dom")
    gp_env = broker_server.sdk_env(admin_org(broker_server, gp))
    hospital_env = broker_server.sdk_env(admin_org(broker_server, hospital))
    batch = tmp_path / "gp.tsb"
    n = 60
    make_batch(batch, dataset="registered", refs=random_refs(n, seed=5),
               tokens=random_tokens(n, 2, seed=5), domain=domain, org=gp)  # fmt: skip

    declared = _declare(hospital_env, "registered", batch, check=False)
    assert declared.returncode == 11
    assert f"made by organisation {gp!r}" in declared.stderr and hospital in declared.stderr
    # Declared by hand, the upload still meets the broker's own check.
    manifest = BatchReader(batch).manifest
    run("tessera-sdk", "dataset", "declare", "registered", "--domain", domain,
        "--key-version", manifest.key_version, "--spec-hash", manifest.spec_hash,
        "--match-key", "nhs", "--match-key", "name_dob", "--one-record-per-person",
        env=hospital_env)  # fmt: skip
    refused = run("tessera-sdk", "upload", str(batch), env=hospital_env, check=False)
    assert refused.returncode == 14 and "batch_org_mismatch" in refused.stderr
    assert records_held(broker_server, domain, f"{hospital}/registered") == 0

    # A batch made for another dataset name cannot be declared under this one.
    other = _declare(gp_env, "pas", batch, check=False)
    assert other.returncode == 11 and "made for dataset 'registered', not 'pas'" in other.stderr
    # Its own organisation declares and uploads it.
    _declare(gp_env, "registered", batch)
    assert "linked" in run("tessera-sdk", "upload", str(batch), env=gp_env).stdout
    assert records_held(broker_server, domain, f"{gp}/registered") == n


def test_a_key_too_weak_to_tell_people_apart_is_refused(broker_server, tmp_path):
    """1,780 records with 2 distinct tokens for one key: a key of sex alone."""
    org, domain, dataset = unique("gp"), unique("dom"), unique("regs")
    env = broker_server.sdk_env(admin_org(broker_server, org))
    n = 1780
    strong = random_tokens(n, 1, seed=9)
    sexes = random_tokens(2, 1, seed=10)
    tokens = [(strong[i][0], sexes[i % 2][0]) for i in range(n)]
    weak = tmp_path / "weak.tsb"
    make_batch(weak, dataset=dataset, refs=random_refs(n, seed=9), tokens=tokens,
               domain=domain, match_keys=("nhs_dob", "sex_only"), chunk_size=500)  # fmt: skip
    _declare(env, dataset, weak)
    refused = run("tessera-sdk", "upload", str(weak), env=env, check=False)
    assert refused.returncode == 14 and "weak_match_key" in refused.stderr
    assert "'sex_only' has 2 distinct tokens for 1,780 records" in refused.stderr
    assert records_held(broker_server, domain, f"{org}/{dataset}") == 0
    fine = tmp_path / "fine.tsb"
    make_batch(fine, dataset=dataset, refs=random_refs(n, seed=11),
               tokens=random_tokens(n, 2, seed=11), domain=domain,
               match_keys=("nhs_dob", "sex_only"), chunk_size=500)  # fmt: skip
    assert "linked" in run("tessera-sdk", "upload", str(fine), env=env).stdout
