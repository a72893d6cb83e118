"""A Redis Cluster master SIGKILLed mid-upload: do acknowledged commits survive failover?

Each test runs its own six-node cluster (it kills one of them) and a broker on it, uploads
small batches one after another from a thread, and SIGKILLs the master holding the audit
log once a few commits were acknowledged; its replica takes over (``cluster-node-timeout``
2 s), the dead node is restarted and rejoins as a replica, and the uploads go on through
the SDK's retries. Then every commit the broker acknowledged is looked for.

With ``TESSERA_BROKER_REDIS_WAIT_REPLICAS=1`` a commit is acknowledged only once a replica
of each master it wrote to holds it, so none may be missing. Without it, Redis replicates
asynchronously and an acknowledged commit *may* be lost (docs/api.md, "Durability and
crashes"); what must hold either way is that nothing is half there: a batch is committed
whole (every chunk, its audit entry) and linked whole, or not committed at all.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from broker.audit import read_audit
from broker.audit.chain import verify_chain
from broker.linkage import Linker
from broker.store import keyspace
from broker.store.linkage_store import LinkageStore
from client_sdk.client import BrokerClient
from client_sdk.errors import BrokerCallError
from keys.batch import BatchReader
from keys.wire import BatchState
from tests.support.cluster_support import RedisClusterSet, start_external_broker
from tests.support.harness import declaration_for, make_batch, random_refs, random_tokens, unique
from tests.support.worker_support import wait_until

logger = logging.getLogger(__name__)

_BATCHES = 16
_KILL_AFTER = 4


def _master_of(cluster: RedisClusterSet, key: str) -> int:
    """The port of the master serving ``key``'s slot now (asking a node still running)."""
    live = next(node for node in cluster.nodes if node.process is not None)
    client = RedisCluster.from_url(f"redis://{live.address}")
    try:
        return int(client.get_node_from_key(key).port)
    finally:
        client.close()


def _batches(tmp_path: Path, domain: str) -> list[Path]:
    paths = []
    for i in range(_BATCHES):
        path = tmp_path / f"batch-{i}.tsb"
        make_batch(
            path,
            dataset="gp",
            refs=random_refs(20, seed=100 + i),
            tokens=random_tokens(20, 2, seed=100 + i),
            chunk_size=10,
            domain=domain,
        )
        paths.append(path)
    return paths


@pytest.mark.parametrize("wait_replicas", ["0", "1"])
def test_acknowledged_commits_after_a_master_fails_over(tmp_path, wait_replicas):
    cluster = RedisClusterSet(tmp_path / "cluster").start()
    broker = None
    try:
        broker = start_external_broker(
            tmp_path / "broker",
            TESSERA_BROKER_REDIS_URL=cluster.url,
            TESSERA_BROKER_REDIS_CLUSTER="true",
            TESSERA_BROKER_REDIS_WAIT_REPLICAS=wait_replicas,
        )
        _, credential = broker.add_org()
        domain = unique("failover")
        paths = _batches(tmp_path, domain)
        manifest = BatchReader(paths[0]).manifest
        with BrokerClient(broker.url, credential) as client:
            client.declare_dataset(declaration_for(manifest))
        broker.close_runtime()
        acknowledged: list[str] = []
        refused: list[str] = []

        def upload_all() -> None:
            with BrokerClient(broker.url, credential, backoff=0.5, retries=8) as client:
                for path in paths:
                    batch_id = BatchReader(path).manifest.batch_id
                    try:
                        client.upload(path, wait=False)
                    except BrokerCallError:
                        refused.append(batch_id)
                        continue
                    acknowledged.append(batch_id)

        uploader = threading.Thread(target=upload_all)
        uploader.start()
        wait_until(lambda: len(acknowledged) >= _KILL_AFTER, "the first commits", timeout=120)
        victim_port = _master_of(cluster, keyspace.audit_log())
        victim = next(n for n in cluster.nodes if n.port == victim_port)
        cluster.kill(victim)
        # Its replica takes over; the operator (or Kubernetes) restarts the dead node,
        # which rejoins as the new master's replica, so its shard has a replica again.
        wait_until(lambda: _master_of(cluster, keyspace.audit_log()) != victim_port, "failover")
        cluster.restart(victim)
        cluster.wait_ok()
        uploader.join(timeout=240)
        assert not uploader.is_alive()
        assert acknowledged, "no upload was acknowledged"

        lost, linked = [], []
        with BrokerClient(broker.url, credential, backoff=0.5, retries=8) as client:
            for batch_id in acknowledged:
                try:
                    status = client.wait_linked("gp", batch_id, timeout=60, poll=0.1)
                except BrokerCallError:
                    lost.append(batch_id)
                    continue
                if status.state is BatchState.LINKED:
                    linked.append(batch_id)
                else:
                    lost.append(batch_id)
        store = broker.runtime.store
        entries = read_audit(store, start=0, count=100_000)
        commits = [e for e in entries if e.action == "batch.commit.append"]
        report = Linker(LinkageStore(store.redis, scope=domain)).report()
        held = next((d.records for d in report.datasets if d.id.endswith("/gp")), 0)
        logger.info(
            "WAIT %s: %d commits acknowledged, %d lost, %d refused; %d records held",
            wait_replicas,
            len(acknowledged),
            len(lost),
            len(refused),
            held,
        )
        # Whatever survived is whole: the audit chain does not fork, and no batch shows
        # as linked while missing records (with WAIT) or beyond those it holds.
        assert verify_chain(entries) is None
        assert len(linked) + len(lost) == len(acknowledged)
        assert held <= 20 * (len(acknowledged) + len(refused))
        if wait_replicas == "1":
            assert lost == [], f"{len(lost)} of {len(acknowledged)} acknowledged commits lost"
            assert held >= 20 * len(linked)
            assert len(commits) >= len(linked)
    finally:
        if broker is not None:
            broker.stop()
        cluster.stop()
