"""The keyspace schema version: a store written by today's layout (no version key) is
stamped and keeps its data; a store stamped newer than this broker is refused, by the
operator commands in one line and by ``serve``, which does not start.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from broker.errors import ConfigurationError
from broker.runtime import BrokerRuntime
from broker.store import keyspace
from broker.store.identities import find_identity
from broker.store.schema import SCHEMA_VERSION, stored_schema_version
from tests.support.harness import running_broker, unique

BIN = Path(sys.executable).parent


def _admin(broker, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "tessera-broker"), "admin", *args],
        env=broker.admin_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_store_of_todays_layout_gets_the_version_and_keeps_its_data(tmp_path):
    with running_broker(tmp_path / "broker") as broker:
        org, _ = broker.add_org(unique("gp"))
        store = broker.runtime.store
        assert stored_schema_version(store) == SCHEMA_VERSION  # stamped at start
        # A store as a broker from before the version wrote it: the same keys, no stamp.
        store.redis.delete(keyspace.schema_version())
        broker.close_runtime()
        runtime = BrokerRuntime.open(broker.settings(), attach=True)
        try:
            assert stored_schema_version(runtime.store) == SCHEMA_VERSION
            assert find_identity(runtime.store, org).name == org
        finally:
            runtime.close()
        listed = _admin(broker, "identity", "list")
        assert listed.returncode == 0 and org in listed.stdout


def test_a_store_of_a_newer_version_is_refused(tmp_path):
    with running_broker(tmp_path / "broker") as broker:
        broker.runtime.store.redis.set(keyspace.schema_version(), SCHEMA_VERSION + 1)
        broker.close_runtime()
        with pytest.raises(ConfigurationError, match="newer than this broker"):
            BrokerRuntime.open(broker.settings(), attach=True)
        refused = _admin(broker, "identity", "list")
        assert refused.returncode != 0
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert f"schema version {SCHEMA_VERSION + 1}" in refused.stderr
        assert "Traceback" not in refused.stderr
        broker.stop()
        log_size = len(broker.log_text())
        with pytest.raises(RuntimeError, match="exited at start"):
            broker.start()
        assert "newer than this broker" in broker.log_text()[log_size:]
