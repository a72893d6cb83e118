"""Redis behind Sentinel with passwords: the master's (``TESSERA_BROKER_REDIS_PASSWORD``)
and the sentinels' own (``TESSERA_BROKER_REDIS_SENTINEL_PASSWORD``). A broker given both
uploads and links; given a wrong one it stops in one line; neither password is ever logged.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from broker.config import BrokerSettings
from client_sdk.client import BrokerClient
from keys.wire import BatchState
from tests.support.cluster_support import SentinelSet, start_external_broker
from tests.support.harness import (
    declaration_for,
    free_port,
    make_batch,
    random_refs,
    random_tokens,
    unique,
)


@pytest.fixture
def guarded(tmp_path):
    sentinels = SentinelSet(
        tmp_path / "sentinel",
        password="pw-" + secrets.token_hex(8),
        sentinel_password="spw-" + secrets.token_hex(8),
    ).start()
    yield sentinels
    sentinels.stop()


def _env(sentinels: SentinelSet, *, password: str, sentinel_password: str) -> dict[str, str]:
    return {
        "TESSERA_BROKER_REDIS_SENTINEL": sentinels.sentinel_addresses,
        "TESSERA_BROKER_REDIS_SENTINEL_MASTER": sentinels.master_name,
        "TESSERA_BROKER_REDIS_PASSWORD": password,
        "TESSERA_BROKER_REDIS_SENTINEL_PASSWORD": sentinel_password,
    }


def test_a_broker_with_both_passwords_uploads_and_links(guarded, tmp_path):
    env = _env(guarded, password=guarded.password, sentinel_password=guarded.sentinel_password)
    broker = start_external_broker(tmp_path / "broker", **env)
    try:
        _, credential = broker.add_org()
        domain = unique("dom")
        path = tmp_path / "batch.tsb"
        manifest = make_batch(
            path,
            dataset="gp",
            refs=random_refs(30, seed=5),
            tokens=random_tokens(30, 2, seed=5),
            domain=domain,
        )
        with BrokerClient(broker.url, credential) as client:
            client.declare_dataset(declaration_for(manifest))
            assert client.upload(path, poll=0.05).state is BatchState.LINKED
    finally:
        broker.stop()
    log = broker.log_text()
    assert guarded.password not in log and guarded.sentinel_password not in log


@pytest.mark.parametrize("wrong", ["master", "sentinel"])
def test_a_wrong_password_is_one_line_naming_neither(guarded, tmp_path, wrong):
    bad = "bad-" + secrets.token_hex(8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(
        _env(
            guarded,
            password=bad if wrong == "master" else guarded.password,
            sentinel_password=bad if wrong == "sentinel" else guarded.sentinel_password,
        )
    )
    env["TESSERA_BROKER_DATA_DIR"] = str(tmp_path / "broker")
    env["TESSERA_BROKER_KEYSTORE_PASSPHRASE"] = "test-" + secrets.token_hex(12)
    env["TESSERA_BROKER_PORT"] = str(free_port())
    result = subprocess.run(
        [sys.executable, "-c", "from broker.cli import main; main()", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"the Sentinel master {guarded.master_name!r}" in lines[0]
    for secret in (bad, guarded.password, guarded.sentinel_password):
        assert secret not in result.stderr


def test_the_passwords_never_show_in_the_settings_or_the_target():
    settings = BrokerSettings(
        development=True,
        redis_sentinel="127.0.0.1:26379",
        redis_sentinel_master="tessera",
        redis_password="master-secret-value",
        redis_sentinel_password="sentinel-secret-value",
    )
    target = settings.redis_target
    assert target is not None and target.password == "master-secret-value"
    for text in (repr(settings), repr(target), str(target)):
        assert "secret-value" not in text


def test_a_password_without_sentinel_is_refused():
    with pytest.raises(ValueError, match="are for Sentinel"):
        BrokerSettings(development=True, redis_url="redis://127.0.0.1:6379", redis_password="x")
