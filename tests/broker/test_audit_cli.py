"""``tessera-broker audit`` as subprocesses, and the checkpoints a serving broker makes."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import pytest

from broker.audit import append_audit, make_checkpoint, read_audit_checkpoints, verify_audit
from broker.config import BrokerSettings
from broker.runtime import BrokerRuntime
from broker.store import keyspace
from keys.signing import public_key_of
from tests.support.harness import running_broker


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("audit-cli")
    env = {
        "TESSERA_BROKER_DATA_DIR": str(path),
        "TESSERA_BROKER_KEYSTORE_PASSPHRASE": "test-" + secrets.token_hex(12),
        "TESSERA_BROKER_DURABLE_WRITES": "0",
    }
    runtime = BrokerRuntime.open(
        BrokerSettings(
            data_dir=path,
            keystore_passphrase=env["TESSERA_BROKER_KEYSTORE_PASSPHRASE"],
            durable_writes=False,
        )
    )
    try:
        for i in range(12):
            append_audit(
                runtime.store,
                identity="gp-north",
                role="org",
                action="batch.chunk",
                dataset="gp-north/extract",
                counts={"records": 10 + i},
            )
    finally:
        runtime.close()
    return path, env


def _run(env, *args):
    full = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")} | env
    return subprocess.run(
        [sys.executable, "-c", "from broker.cli import main; main()", "audit", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _runtime(path, env):
    return BrokerRuntime.open(
        BrokerSettings(
            data_dir=path,
            keystore_passphrase=env["TESSERA_BROKER_KEYSTORE_PASSPHRASE"],
            durable_writes=False,
        )
    )


def test_checkpoint_verify_export_and_offline_verify(data_dir, tmp_path):
    path, env = data_dir
    made = _run(env, "checkpoint")
    assert made.returncode == 0, made.stderr
    assert "checkpoint at position 11" in made.stdout
    verified = _run(env, "verify")
    assert verified.returncode == 0, verified.stderr
    assert "audit log verifies: 12 entries, 1 signed checkpoints" in verified.stdout
    key_file = tmp_path / "audit.pub"
    shown = _run(env, "public-key", "--out", str(key_file))
    assert shown.returncode == 0 and shown.stdout.splitlines()[1].startswith("ed25519:")
    export = tmp_path / "audit.jsonl"
    exported = _run(env, "export", "--out", str(export))
    assert exported.returncode == 0, exported.stderr
    lines = export.read_text().splitlines()
    assert len(lines) == 13 and json.loads(lines[-1])["checkpoint"]["position"] == 11
    lines[4] = lines[4].replace('"records":14', '"records":41')
    export.write_text("\n".join(lines) + "\n")
    offline = _run(env, "verify", "--file", str(export), "--public-key", str(key_file))
    assert offline.returncode == 28
    assert "position 4" in offline.stderr


def test_verify_names_the_first_bad_position_and_exits_non_zero(data_dir):
    path, env = data_dir
    runtime = _runtime(path, env)
    try:
        raws = runtime.store.redis.lrange(keyspace.audit_log(), 0, -1)
        runtime.store.redis.lset(keyspace.audit_log(), 6, raws[7])
    finally:
        runtime.close()
    failed = _run(env, "verify")
    assert failed.returncode == 28
    assert "position 6" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_a_serving_broker_checkpoints_every_n_entries(tmp_path):
    with running_broker(tmp_path / "broker", TESSERA_BROKER_AUDIT_CHECKPOINT_EVERY="4") as broker:
        for _ in range(9):
            append_audit(broker.runtime.store, identity="operator", role="operator", action="x")
        deadline = time.monotonic() + 60
        positions: list[int] = []
        while time.monotonic() < deadline and positions[-1:] != [7]:
            positions = [c.position for c in read_audit_checkpoints(broker.runtime.store)]
            time.sleep(0.2)
        assert positions == [3, 7]
        key = public_key_of(broker.runtime.secrets.audit_signing_key)
        assert verify_audit(broker.runtime.store, key).ok


def _fresh_log(tmp_path, entries):
    """A data directory whose log the broker wrote (each entry signed as written)."""
    env = {
        "TESSERA_BROKER_DATA_DIR": str(tmp_path),
        "TESSERA_BROKER_KEYSTORE_PASSPHRASE": "test-" + secrets.token_hex(12),
        "TESSERA_BROKER_DURABLE_WRITES": "0",
    }
    runtime = _runtime(tmp_path, env)
    try:
        for i in range(entries):
            append_audit(
                runtime.store,
                identity="gp-north",
                role="org",
                action="batch.chunk",
                dataset="gp-north/extract",
                counts={"records": 10 + i},
            )
    finally:
        runtime.close()
    return env


def _canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _edit_entry(edit):
    def tamper(redis):
        raw = redis.lindex(keyspace.audit_log(), 5)
        redis.lset(keyspace.audit_log(), 5, edit(raw))

    return tamper


def _drop_tail(*, delete_head):
    def tamper(redis):
        kept = redis.lrange(keyspace.audit_log(), 0, 4)
        redis.ltrim(keyspace.audit_log(), 0, 4)
        last = json.loads(kept[-1])
        if delete_head:
            redis.delete(keyspace.audit_head())
        else:
            redis.set(keyspace.audit_head(), _canonical({"hash": last["hash"], "seq": 4}))

    return tamper


TAMPERINGS = {
    "extra field": _edit_entry(lambda raw: _canonical({**json.loads(raw), "note": "x"})),
    "duplicate key": _edit_entry(
        lambda raw: raw.replace(b'{"action":', b'{"action":"x","action":', 1)
    ),
    "number as string": _edit_entry(lambda raw: _canonical({**json.loads(raw), "seq": "5"})),
    "tail truncated": _drop_tail(delete_head=False),
    "head deleted and tail truncated": _drop_tail(delete_head=True),
}


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_verify_refuses_each_tampering_and_names_its_position(tmp_path, tampering):
    env = _fresh_log(tmp_path, 8)
    clean = _run(env, "verify")
    assert clean.returncode == 0, clean.stderr
    assert "head signed at position 7" in clean.stdout
    runtime = _runtime(tmp_path, env)
    try:
        TAMPERINGS[tampering](runtime.store.redis)
    finally:
        runtime.close()
    failed = _run(env, "verify")
    assert failed.returncode == 28
    assert "audit log fails verification at position 5" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_a_rollback_is_found_against_an_anchor_kept_outside_the_broker(tmp_path):
    env = _fresh_log(tmp_path / "broker", 8)
    anchor = tmp_path / "anchor.json"
    made = _run(env, "checkpoint", "--out", str(anchor))
    assert made.returncode == 0, made.stderr
    runtime = _runtime(tmp_path / "broker", env)
    try:
        redis = runtime.store.redis
        fifth = json.loads(redis.lindex(keyspace.audit_log(), 4))
        # the state as it was at position 4, head checkpoint included (copied at the time)
        at_four = make_checkpoint(4, fifth["hash"], runtime.secrets.audit_signing_key)
        redis.ltrim(keyspace.audit_log(), 0, 4)
        redis.set(keyspace.audit_head(), _canonical({"hash": fifth["hash"], "seq": 4}))
        redis.set(keyspace.audit_head_checkpoint(), at_four.to_json())
        redis.delete(keyspace.audit_checkpoints())
    finally:
        runtime.close()
    assert _run(env, "verify").returncode == 0  # the bound: Redis alone cannot tell
    failed = _run(env, "verify", "--anchor", str(anchor))
    assert failed.returncode == 28
    assert "audit log fails verification at position 5: anchor 0 (position 7)" in failed.stderr
    not_an_anchor = tmp_path / "empty.json"
    not_an_anchor.write_text("{}\n")
    refused = _run(env, "verify", "--anchor", str(not_an_anchor))
    assert refused.returncode != 0 and "no audit checkpoint in it" in refused.stderr
    assert "Traceback" not in refused.stderr
