"""Ingest and linkage benchmark: records per second and Redis bytes per record.

Two parts, both on synthetic data with eight match keys:

* ``engine_*``: the linkage engine alone (no HTTP) against a private redis-server: ``n``
  GP records are linked first, then ``n`` hospital records are timed as they link
  against them; memory per record is Redis's ``used_memory`` growth over the ``2n``
  records, payload excluded (the records carry none).
* ``http_*``: the same through the broker's HTTP API (upload, commit, link), when the
  broker's upload endpoints exist.

``run(n)`` is what ``make bench`` calls; ``python -m bench.ingest N`` runs it alone.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

import redis

from broker.linkage import DatasetInfo, IncomingRecord, Linker
from broker.store.embedded import EmbeddedRedis
from broker.store.linkage_store import LinkageStore
from keys.derive import RecordRef, StoredToken

__all__ = ["make_records", "run", "run_engine"]

KEYS = tuple(f"key{k}" for k in range(8))
CHUNK = 5_000


def make_records(
    n: int, *, dataset: str, seed: int, match_rate: float = 0.8, missing_rate: float = 0.05
) -> list[IncomingRecord]:
    """Synthetic records of person ``i`` (0 <= i < n), eight tokens each.

    A person's token at key ``k`` is the same in every dataset; each record misses each
    token with probability ``missing_rate``, and a fraction ``1 - match_rate`` of the
    records belong to persons only that dataset holds.
    """
    rng = random.Random(seed)
    out: list[IncomingRecord] = []
    for i in range(n):
        person = i if rng.random() < match_rate else n * (seed + 7) + i
        tokens = tuple(
            None
            if rng.random() < missing_rate
            else StoredToken(random.Random(person * 8 + k).randbytes(16))
            for k in range(8)
        )
        ref = RecordRef(random.Random(f"{dataset}/{i}").randbytes(16))
        out.append(IncomingRecord(ref, tokens, ()))
    return out


def run_engine(n: int) -> dict[str, float]:
    """Link ``n`` GP then ``n`` hospital records through the engine alone."""
    gp = DatasetInfo("gp/practice", "gp", True, KEYS)
    hospital = DatasetInfo("acute/admissions", "acute", True, KEYS)
    gp_records = make_records(n, dataset=gp.id, seed=1, match_rate=1.0)
    hospital_records = make_records(n, dataset=hospital.id, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp))
        server.start()
        try:
            client = redis.Redis.from_url(server.url)
            store = LinkageStore(client, scope="bench")
            store.tune_server()
            linker = Linker(store)
            base = int(client.info("memory")["used_memory"])
            started = time.perf_counter()
            for i in range(0, n, CHUNK):
                linker.link(gp, gp_records[i : i + CHUNK], batch_id="gp-1")
            gp_seconds = time.perf_counter() - started
            started = time.perf_counter()
            for i in range(0, n, CHUNK):
                linker.link(hospital, hospital_records[i : i + CHUNK], batch_id="acute-1")
            hospital_seconds = time.perf_counter() - started
            used = int(client.info("memory")["used_memory"]) - base
            report = linker.report()
            client.close()
        finally:
            server.stop()
    return {
        "engine_gp_records_per_s": n / gp_seconds,
        "engine_link_records_per_s": n / hospital_seconds,
        "engine_bytes_per_record": used / (2 * n),
        "engine_linked_persons": float(report.linked_persons),
    }


def run(n: int) -> dict[str, float]:
    """Every ingest number at size ``n`` (records per dataset)."""
    return run_engine(n)


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    for name, value in run(size).items():
        print(f"{name:<32} {value:>14,.1f}")
