"""The broker on a real Redis Cluster and over Sentinel, beside the embedded single node.

Each end-to-end case runs twice: on the session's broker (embedded redis-server) and on
a broker whose ``TESSERA_BROKER_REDIS_URL`` names a node of a six-node local cluster with
``TESSERA_BROKER_REDIS_CLUSTER=true``. A store operation that crossed slots would fail
there with CROSSSLOT.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.cli.operator import load_settings
from broker.errors import ConfigurationError
from broker.linkage import Linker
from broker.store.linkage_store import LinkageStore
from tests.support.cluster_support import (
    ExternalRedisBroker,
    RedisClusterSet,
    SentinelSet,
    TlsRedisProxy,
    start_external_broker,
    write_self_signed,
)
from tests.support.harness import (
    BrokerProcess,
    free_port,
    make_batch,
    random_refs,
    random_tokens,
    unique,
)
from tests.support.release_world import GP_PERSONS, HOSPITAL_PERSONS, ae, age_band, build_world, ltc

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.xdist_group("redis-cluster")  # one cluster and one Sentinel set
BOTH = set(GP_PERSONS) & set(HOSPITAL_PERSONS)


@pytest.fixture(scope="module")
def cluster_broker(
    redis_cluster: RedisClusterSet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExternalRedisBroker]:
    broker = start_external_broker(
        tmp_path_factory.mktemp("cluster-broker"),
        TESSERA_BROKER_REDIS_URL=redis_cluster.url,
        TESSERA_BROKER_REDIS_CLUSTER="true",
    )
    yield broker
    broker.stop()


@pytest.fixture(params=["single", "cluster"])
def broker(request: pytest.FixtureRequest) -> BrokerProcess:
    name = "broker_server" if request.param == "single" else "cluster_broker"
    return request.getfixturevalue(name)


def _run(tool: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / tool), *args], env=env, capture_output=True, text=True, timeout=120
    )


def _records_held(broker: BrokerProcess, domain: str, dataset_id: str) -> int:
    report = Linker(LinkageStore(broker.runtime.store.redis, scope=domain)).report()
    return next((d.records for d in report.datasets if d.id == dataset_id), 0)


def _upload_and_link(broker: BrokerProcess, tmp_path: Path, n: int = 300) -> None:
    org, credential = broker.add_org()
    domain, dataset = unique("dom"), unique("regs")
    env = broker.sdk_env(credential)
    batch = tmp_path / "gp.tsb"
    refs = random_refs(n, seed=3)  # 300: three record buckets of 128, keys of one script
    make_batch(batch, dataset=dataset, refs=refs, tokens=random_tokens(n, 2, seed=3), domain=domain)
    declared = _run(
        "tessera-sdk", "dataset", "declare", dataset, "--from-batch", str(batch),
        "--one-record-per-person", env=env,
    )  # fmt: skip
    assert declared.returncode == 0, declared.stderr
    uploaded = _run("tessera-sdk", "upload", str(batch), "--dataset", dataset, env=env)
    assert uploaded.returncode == 0, uploaded.stderr
    assert f"{n} records" in uploaded.stdout and "linked" in uploaded.stdout
    again = _run("tessera-sdk", "upload", str(batch), env=env)
    assert again.returncode == 0, again.stderr
    assert _records_held(broker, domain, f"{org}/{dataset}") == n


def test_upload_and_link_through_the_sdk(broker, tmp_path):
    _upload_and_link(broker, tmp_path)


def test_a_cohort_release_is_the_persons_in_both_datasets(broker, tmp_path):
    world = build_world(broker, tmp_path)
    agreement = world.agreement()
    with broker.client(world.researcher_cred) as http:
        answer = http.post(f"/v1/agreements/{agreement.id}/cohort", json={})
    assert answer.status_code == 200, answer.text
    cohort = answer.json()
    assert cohort["columns"] == [
        "pseudonym",
        f"{world.gp}/reg.AGE_BAND",
        f"{world.gp}/reg.LTC",
        f"{world.hosp}/pas.AE",
        "link_quality",
    ]
    expected = sorted((age_band(i), ltc(i), ae(i)) for i in BOTH)
    assert sorted(tuple(row[1:4]) for row in cohort["rows"]) == expected
    assert {row[4] for row in cohort["rows"]} <= {"nhs", "name_dob"}
    assert len({row[0] for row in cohort["rows"]}) == len(BOTH)


def test_the_audit_log_verifies(broker, tmp_path):
    _upload_and_link(broker, tmp_path, n=40)
    verified = _run("tessera-broker", "audit", "verify", env=broker.admin_env())
    assert verified.returncode == 0, verified.stderr


def test_revoke_and_reissue_a_credential_through_the_admin_cli(broker):
    org, credential = broker.add_org()
    with broker.client(credential) as http:
        assert http.get("/v1/whoami").status_code == 200
    revoke = _run("tessera-broker", "admin", "credential", "revoke", org, env=broker.admin_env())
    assert revoke.returncode == 0, revoke.stderr
    with broker.client(credential) as http:
        assert http.get("/v1/whoami").status_code == 401
    issued = _run("tessera-broker", "admin", "credential", "issue", org, env=broker.admin_env())
    assert issued.returncode == 0, issued.stderr
    fresh = issued.stdout.strip()
    with broker.client(fresh) as http:
        assert http.get("/v1/whoami").status_code == 200
    with broker.client(credential) as http:
        assert http.get("/v1/whoami").status_code == 401


def test_the_cluster_brokers_keys_spread_over_every_master(cluster_broker, redis_cluster):
    for _ in range(10):  # 30 keys (credential, identity, name) of random slots
        cluster_broker.add_org()
    sizes = []
    for node in redis_cluster.nodes:
        with node.client() as client:
            if client.info("replication")["role"] == "master":
                sizes.append(client.dbsize())
    assert len(sizes) == 3
    assert all(size > 0 for size in sizes), sizes


def test_a_broker_over_sentinel_uploads_and_links(
    redis_sentinel: SentinelSet, tmp_path_factory: pytest.TempPathFactory
):
    broker = start_external_broker(
        tmp_path_factory.mktemp("sentinel-broker"),
        TESSERA_BROKER_REDIS_SENTINEL=redis_sentinel.sentinel_addresses,
        TESSERA_BROKER_REDIS_SENTINEL_MASTER=redis_sentinel.master_name,
    )
    try:
        _upload_and_link(broker, tmp_path_factory.mktemp("sentinel-batch"), n=40)
        assert redis_sentinel.master is not None
        with redis_sentinel.master.client() as master:
            assert master.dbsize() > 0  # the sentinels named this master
    finally:
        broker.stop()


def test_a_broker_over_rediss_verifies_the_servers_certificate(private_redis, tmp_path):
    cert, key = write_self_signed(tmp_path)
    proxy = TlsRedisProxy(private_redis.socket_path, cert, key).start()
    url = f"rediss://127.0.0.1:{proxy.port}"
    try:
        untrusting = _serve_env(tmp_path / "untrusting", {_URL: url})
        refused = _run("tessera-broker", "serve", env=untrusting)
        assert refused.returncode != 0  # the certificate is not trusted: no connection
        assert f"Redis at 127.0.0.1:{proxy.port} does not answer" in refused.stderr
        broker = start_external_broker(
            tmp_path / "trusting", TESSERA_BROKER_REDIS_URL=url, TESSERA_BROKER_REDIS_CA=str(cert)
        )
        try:
            _upload_and_link(broker, tmp_path, n=40)
        finally:
            broker.stop()
    finally:
        proxy.stop()


def _serve_env(data_dir: Path, redis_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(
        {
            "TESSERA_BROKER_DATA_DIR": str(data_dir),
            "TESSERA_BROKER_KEYSTORE_PASSPHRASE": "test-passphrase-long-enough",
            "TESSERA_BROKER_PORT": str(free_port()),
            **redis_env,
        }
    )
    return env


_URL, _CLUSTER = "TESSERA_BROKER_REDIS_URL", "TESSERA_BROKER_REDIS_CLUSTER"
_SENTINEL, _MASTER = "TESSERA_BROKER_REDIS_SENTINEL", "TESSERA_BROKER_REDIS_SENTINEL_MASTER"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {_URL: "redis://127.0.0.1:1", _CLUSTER: "1", _SENTINEL: "127.0.0.1:2", _MASTER: "m"},
            "not both",
        ),
        ({_URL: "http://127.0.0.1:1"}, "must start with redis://"),
        ({_CLUSTER: "1"}, "REDIS_CLUSTER needs"),
        ({_URL: "unix:///tmp/redis.sock", _CLUSTER: "1"}, "REDIS_CLUSTER needs"),
        ({_SENTINEL: "127.0.0.1"}, "is not host:port"),
        ({_SENTINEL: "127.0.0.1:26379"}, "needs TESSERA_BROKER_REDIS_SENTINEL_MASTER"),
        ({_MASTER: "m"}, "SENTINEL_MASTER needs"),
        ({_SENTINEL: "127.0.0.1:26379", _MASTER: "m", _URL: "redis://h:1"}, "leave"),
        ({_URL: "redis://h:1", "TESSERA_BROKER_REDIS_CA": "/nonexistent"}, "needs a rediss://"),
        ({_URL: "rediss://h:1", "TESSERA_BROKER_REDIS_CA": "/nonexistent"}, "no file at"),
    ],
)
def test_redis_settings_that_cannot_work_are_refused_in_one_line(env, message, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as refused:
        load_settings(keystore_passphrase="test-passphrase-long-enough")
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_serve_refuses_cluster_and_sentinel_together_in_one_line(tmp_path):
    both = {_URL: "redis://127.0.0.1:1", _CLUSTER: "1", _SENTINEL: "127.0.0.1:2", _MASTER: "m"}
    result = _run("tessera-broker", "serve", env=_serve_env(tmp_path, both))
    assert result.returncode != 0
    assert "not both" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
