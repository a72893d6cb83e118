"""The linkage engine on a local Redis Cluster beside a single node: does the cluster cost?

The same synthetic GP and hospital records as ``bench.ingest`` (eight match keys, 80% of
the hospital's patients known to the GP) are linked by one :class:`Linker` twice: against
a private redis-server, and against the six-node local cluster of the test suite
(``tests/support/cluster_support.py``: three masters, three replicas, on loopback, AOF on).
A scope's keys share one slot, so linking one domain runs on one master; what the cluster
adds is redis-py's slot routing and the replication stream to that master's replica.

CPU time, not wall clock, is the number to compare: this machine is shared. ``single_*``
and ``cluster_*`` report records per second (wall clock, for reference), the linking
process's CPU µs per record, and the CPU µs per record of Redis (for the cluster, summed
over every node, replicas included), for the GP records as they are ingested into an empty
scope (``*_gp_*``) and for the hospital records as they link against them (``*_link_*``).

``python -m bench.cluster N`` runs it alone; ``make bench`` calls ``run(n)``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from bench.ingest import KEYS, SyntheticPair
from broker.linkage import DatasetInfo, IncomingRecord, Linker
from broker.store.embedded import EmbeddedRedis
from broker.store.linkage_store import LinkageStore
from keys.derive import RecordRef, StoredToken
from tests.support.cluster_support import RedisClusterSet

__all__ = ["run"]

_CHUNK = 10_000


def _server_cpu(clients: list[redis.Redis]) -> float:
    """CPU seconds (user and system) the servers behind ``clients`` have used."""
    total = 0.0
    for client in clients:
        info = client.info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


def _records(
    pair: SyntheticPair, dataset: DatasetInfo, people: list[int], salt: int
) -> list[IncomingRecord]:
    refs = pair.refs(dataset.id, len(people))
    return [
        IncomingRecord(
            RecordRef(ref),
            tuple(None if t is None else StoredToken(t) for t in pair.tokens(p, salt)),
            (),
        )
        for ref, p in zip(refs, people, strict=True)
    ]


def _link(
    prefix: str, client: redis.Redis, servers: Callable[[], list[redis.Redis]], n: int
) -> dict[str, float]:
    """Link ``n`` GP then ``n`` hospital records through ``client``; time each dataset's."""
    pair = SyntheticPair(n)
    gp = DatasetInfo("gp/practice", "gp", True, KEYS)
    hospital = DatasetInfo("acute/admissions", "acute", True, KEYS)
    linker = Linker(LinkageStore(client, scope="bench"))
    out: dict[str, float] = {}
    for part, dataset, people, salt in (
        ("gp", gp, pair.gp_people, 1),
        ("link", hospital, pair.hospital_people, 2),
    ):
        records = _records(pair, dataset, people, salt)
        started, cpu, server_cpu = time.perf_counter(), time.process_time(), _server_cpu(servers())
        for i in range(0, n, _CHUNK):
            linker.link(dataset, records[i : i + _CHUNK], batch_id=f"{dataset.org}-1")
        seconds = time.perf_counter() - started
        server_cpu = _server_cpu(servers()) - server_cpu
        out[f"{prefix}_{part}_records_per_s"] = n / seconds
        out[f"{prefix}_{part}_python_us_per_record"] = 1e6 * (time.process_time() - cpu) / n
        out[f"{prefix}_{part}_redis_us_per_record"] = 1e6 * server_cpu / n
        del records
    out[f"{prefix}_linked_fraction"] = linker.report().linked_persons / n
    return out


def run(n: int) -> dict[str, float]:
    """Link ``n`` hospital records against ``n`` GP records on one node, then a cluster."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "single")
        server.start()
        try:
            client = redis.Redis.from_url(server.url, socket_timeout=120)
            client.config_set("appendfsync", "always")
            out.update(_link("single", client, lambda: [client], n))
            client.close()
        finally:
            server.stop()
        cluster = RedisClusterSet(Path(tmp) / "cluster").start()
        try:
            nodes = [node.client() for node in cluster.nodes]
            for node in nodes:
                node.config_set("appendfsync", "always")
            routed = RedisCluster.from_url(cluster.url, socket_timeout=120)
            out.update(_link("cluster", routed, lambda: nodes, n))  # type: ignore[arg-type]
            routed.close()
            for node in nodes:
                node.close()
        finally:
            cluster.stop()
    return out


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    for name, value in run(size).items():
        print(f"{name:<36} {value:>14,.2f}")
