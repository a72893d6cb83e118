"""Two linkage domains linked by one ``tessera-broker link-worker`` process, then by two.

A broker serves with ``--no-link-worker`` (its embedded redis-server beside it); two
domains, each with a GP dataset and a hospital dataset of ``n`` records (the synthetic
tokens of ``bench.ingest``: eight match keys, 80% of the hospital's patients known to the
GP), are uploaded through the HTTP API with the SDK's upload client and committed, so all
four batches are queued before any worker runs. Then the workers start, and the clock runs
from their launch until the four batches are linked (the GP batch of a domain first, as
committed). Each row has its own broker, so the two rows start from the same empty store.

A worker holds one domain at a time (broker/worker.py), so two workers link the two domains
side by side: ``two_workers_domains_split`` is 1 when each domain was seen held by a
different worker while linking. Reported per row (``one_worker_*``, ``two_workers_*``):

* ``records_per_s``: the ``4n`` records linked over the wall clock, process start included;
* ``worker_us_per_record``: CPU µs (user and system, from /proc) of the link-worker
  processes summed, per record linked (each process's start-up, about a CPU-second of
  imports, included: it weighs at tiny ``n`` only); ``busiest_worker_cpu_share``: the largest one
  process's share of that CPU (0.5 when two split the work evenly);
* ``redis_us_per_record``: the redis-server's CPU µs per record (``INFO cpu``).

CPU time is the comparable number: this machine is shared, so the wall clock swings.

``python -m bench.link_workers N`` runs it alone; ``make bench`` calls ``run(n)``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.ingest import CHUNK, KEYS, SyntheticPair, _cpu, _process_cpu
from broker.store.leases import scope_holder
from client_sdk.client import BrokerClient
from keys.derive import RecordRef, Token
from keys.wire import BatchState, DatasetDeclaration
from tests.support.harness import make_batch, start_serving
from tests.support.worker_support import LinkWorkerProcess, start_link_worker

__all__ = ["run"]

_DOMAINS = ("bench-a", "bench-b")
_ORGS = ("gp", "acute")


@dataclass(frozen=True, slots=True)
class _Batch:
    """One batch file to upload: the org sending it, its dataset and its path."""

    org: str
    dataset: str
    domain: str
    path: Path


def _write_batches(pair: SyntheticPair, directory: Path) -> list[_Batch]:
    """The four batch files, GP batches first so each domain's GP batch is committed first."""
    batches = []
    for org, people, salt in (("gp", pair.gp_people, 1), ("acute", pair.hospital_people, 2)):
        tokens = [
            tuple(None if t is None else Token(t) for t in pair.tokens(p, salt)) for p in people
        ]
        for domain in _DOMAINS:
            dataset = f"main-{domain}"
            path = directory / f"{org}-{domain}.tsb"
            make_batch(
                path,
                dataset=dataset,
                refs=[RecordRef(r) for r in pair.refs(f"{org}/{domain}", len(people))],
                tokens=tokens,
                chunk_size=CHUNK,
                domain=domain,
                spec_hash="bench-spec",
                match_keys=KEYS,
            )
            batches.append(_Batch(org, dataset, domain, path))
    return batches


def _upload_all(
    clients: dict[str, BrokerClient], batches: list[_Batch]
) -> list[tuple[BrokerClient, str]]:
    """Declare the datasets and upload every batch without waiting for it to link."""
    for client in clients.values():
        for domain in _DOMAINS:
            client.declare_dataset(
                DatasetDeclaration(
                    name=f"main-{domain}",
                    one_record_per_person=True,
                    domain=domain,
                    spec_hash="bench-spec",
                    key_version="v1",
                    match_keys=list(KEYS),
                )
            )
    uploaded = []
    for batch in batches:
        client = clients[batch.org]
        status = client.upload(batch.path, wait=False)
        uploaded.append((client, status.batch_id))
    return uploaded


def _row(prefix: str, workers: int, batches: list[_Batch], n: int, tmp: Path) -> dict[str, float]:
    """Upload the batches to a fresh broker, then time ``workers`` link workers linking them."""
    broker = start_serving(tmp / prefix, ("--no-link-worker",), {})
    processes: list[LinkWorkerProcess] = []
    clients: dict[str, BrokerClient] = {}
    try:
        for org in _ORGS:
            clients[org] = BrokerClient(broker.url, broker.add_org(org)[1])
        uploaded = _upload_all(clients, batches)
        redis_client = broker.runtime.store.redis
        redis_cpu = _cpu(redis_client)
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            processes = list(
                pool.map(lambda i: start_link_worker(broker, f"{prefix}-{i}"), range(workers))
            )
        holders: dict[str, set[str]] = {domain: set() for domain in _DOMAINS}
        pending = list(zip(batches, uploaded, strict=True))
        while pending:
            for domain in _DOMAINS:
                holder = scope_holder(broker.runtime.store, domain)
                if holder is not None:
                    holders[domain].add(holder)
            batch, (client, batch_id) = pending[0]
            state = client.batch_status(batch.dataset, batch_id).state
            if state is BatchState.FAILED:
                raise RuntimeError(f"{batch.org} batch of {batch.domain} failed to link")
            if state is BatchState.LINKED:
                pending.pop(0)
            else:
                time.sleep(0.1)
        seconds = time.perf_counter() - started
        cpu = [_process_cpu(p.process.pid if p.process else None) for p in processes]
        redis_cpu = _cpu(redis_client) - redis_cpu
    finally:
        for process in processes:
            process.stop()
        for client in clients.values():
            client.close()
        broker.stop()
    records = len(batches) * n
    owners = [holders[domain] for domain in _DOMAINS]
    split = all(len(o) == 1 for o in owners) and len(owners[0] | owners[1]) == 2
    return {
        f"{prefix}_records_per_s": records / seconds,
        f"{prefix}_worker_us_per_record": 1e6 * sum(cpu) / records,
        f"{prefix}_busiest_worker_cpu_share": max(cpu) / sum(cpu) if sum(cpu) else 0.0,
        f"{prefix}_redis_us_per_record": 1e6 * redis_cpu / records,
        f"{prefix}_domains_split": 1.0 if split else 0.0,
    }


def run(n: int) -> dict[str, float]:
    """Link two domains of ``n`` GP and ``n`` hospital records with one worker, then two."""
    with tempfile.TemporaryDirectory() as tmp:
        batches = _write_batches(SyntheticPair(n), Path(tmp))
        return {
            **_row("one_worker", 1, batches, n, Path(tmp)),
            **_row("two_workers", 2, batches, n, Path(tmp)),
        }


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    for name, value in run(size).items():
        print(f"{name:<40} {value:>14,.2f}")
