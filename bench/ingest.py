"""Ingest and linkage benchmark: records per second and Redis bytes per record.

Two parts, on synthetic data with eight match keys, one record per person in both
datasets, 95% of tokens present and 80% of the hospital's patients known to the GP:

* ``engine_*``: the linkage engine alone (no HTTP) against a private redis-server: ``n``
  GP records are linked first, then ``n`` hospital records are timed as they link
  against them; bytes per record is the growth of Redis's ``used_memory`` over the
  ``2n`` records, payload excluded (the records carry none). It also reports the growth
  of the linking process's resident memory (the worker's mirror of the scope) and how
  long a new worker takes to read the scope into its mirror.
* ``http_*``: the whole path — ``tessera-broker serve`` with its embedded redis-server,
  the SDK's upload client sending batch files in chunks, re-keying, storing, linking —
  with client, broker and Redis sharing this machine. The GP batch is uploaded and linked
  first; the hospital batch is timed from the start of its upload until it is linked.

A third part, ``http_evidence_*`` (:func:`run_http_evidence`), is the whole HTTP path
with the probabilistic stage: batch files the SDK wrote under ``uk-health-probabilistic``
(match keys and the evidence) of a GP list and a hospital index from one population.

It runs in the shape docs/deploy.md recommends for a service: ``tessera-broker serve
--no-link-worker`` for the HTTP API and a separate ``tessera-broker link-worker`` process,
so receiving and linking can use two cores (``http-evidence-thread``: the link worker as a
thread inside ``serve``, as before, for comparison).

``run(n)`` is what ``make bench`` calls (``n`` records per dataset; 1,000,000 at full
scale), and ``run(n, evidence=1)`` its entry for the third part;
``python -m bench.ingest N PART`` runs one part alone: ``engine``, ``http``,
``http-evidence``, ``http-evidence-thread``, ``http-evidence-2api`` (``serve --workers 2``
beside the link worker process) or ``evidence`` (:func:`run_evidence`, the probabilistic
stage's cost in the engine alone, not in ``run``).
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import redis

import broker.linkage.engine
from broker.linkage import DatasetInfo, IncomingRecord, Linker
from broker.store.embedded import EmbeddedRedis
from broker.store.linkage_store import LinkageStore
from keys.derive import RecordRef, StoredToken

if TYPE_CHECKING:
    from client_sdk.client import BrokerClient, UploadProgress
    from tests.support.harness import BrokerProcess
    from tests.support.worker_support import LinkWorkerProcess

__all__ = ["SyntheticPair", "run", "run_engine", "run_http", "run_http_evidence"]

KEYS = tuple(f"key{k}" for k in range(8))
CHUNK = 10_000


class SyntheticPair:
    """Token rows of a GP dataset and a hospital dataset drawn from one population.

    Person ``p``'s token at key ``k`` is the same 16 bytes in both datasets; each record
    misses each token with probability ``missing``; a fraction ``1 - overlap`` of the
    hospital's records belong to people the GP does not hold.
    """

    def __init__(self, n: int, *, overlap: float = 0.8, missing: float = 0.05) -> None:
        rng = random.Random(20261124)
        self.n = n
        people = 2 * n
        self._table = rng.randbytes(16 * len(KEYS) * people)
        self.gp_people = list(range(n))
        self.hospital_people = [
            i if rng.random() < overlap else n + i for i in rng.sample(range(n), n)
        ]
        self._present = [
            tuple(rng.random() >= missing for _ in KEYS) for _ in range(min(people, 65536))
        ]

    def tokens(self, person: int, salt: int) -> tuple[bytes | None, ...]:
        """Tokens of one record of ``person`` (``salt`` varies which ones are missing)."""
        mask = self._present[(person * 31 + salt) % len(self._present)]
        base = person * len(KEYS) * 16
        return tuple(
            self._table[base + 16 * k : base + 16 * k + 16] if mask[k] else None
            for k in range(len(KEYS))
        )

    def refs(self, dataset: str, count: int) -> list[bytes]:
        """Distinct 16-byte references."""
        rng = random.Random(dataset)
        return [rng.randbytes(16) for _ in range(count)]


def _cpu(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used (user and system, main process)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _process_cpu(*pids: int | None) -> float:
    """CPU seconds (user and system) processes ``pids`` have used (``None``: none, and 0
    where /proc is missing)."""
    ticks = 0
    for pid in pids:
        if pid is None:
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _resident_bytes() -> int:
    """This process's resident memory; 0 where /proc is missing."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def run_engine(n: int) -> dict[str, float]:
    """Link ``n`` GP then ``n`` hospital records through the engine alone."""
    pair = SyntheticPair(n)
    gp = DatasetInfo("gp/practice", "gp", True, KEYS)
    hospital = DatasetInfo("acute/admissions", "acute", True, KEYS)

    def records(dataset: DatasetInfo, people: list[int], salt: int) -> list[IncomingRecord]:
        refs = pair.refs(dataset.id, len(people))
        return [
            IncomingRecord(
                RecordRef(ref),
                tuple(None if t is None else StoredToken(t) for t in pair.tokens(p, salt)),
                (),
            )
            for ref, p in zip(refs, people, strict=True)
        ]

    gp_records = records(gp, pair.gp_people, 1)
    hospital_records = records(hospital, pair.hospital_people, 2)
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp))
        server.start()
        try:
            client = redis.Redis.from_url(server.url, socket_timeout=120)
            store = LinkageStore(client, scope="bench")
            store.tune_server()
            linker = Linker(store)
            base = int(client.info("memory")["used_memory"])
            resident = _resident_bytes()
            started, cpu, redis_cpu = time.perf_counter(), time.process_time(), _cpu(client)
            for i in range(0, n, CHUNK):
                linker.link(gp, gp_records[i : i + CHUNK], batch_id="gp-1")
            gp_seconds = time.perf_counter() - started
            gp_cpu = time.process_time() - cpu
            gp_redis = _cpu(client) - redis_cpu
            started, cpu, redis_cpu = time.perf_counter(), time.process_time(), _cpu(client)
            for i in range(0, n, CHUNK):
                linker.link(hospital, hospital_records[i : i + CHUNK], batch_id="acute-1")
            hospital_seconds = time.perf_counter() - started
            hospital_cpu = time.process_time() - cpu
            hospital_redis = _cpu(client) - redis_cpu
            used = int(client.info("memory")["used_memory"]) - base
            resident = _resident_bytes() - resident
            # A worker that starts, or takes the scope over, reads it whole first.
            newcomer = LinkageStore(client, scope="bench")
            read_started = time.perf_counter()
            newcomer.release(newcomer.acquire())
            read_seconds = time.perf_counter() - read_started
            report = linker.report()
            client.close()
        finally:
            server.stop()
    return {
        "engine_gp_records_per_s": n / gp_seconds,
        "engine_link_records_per_s": n / hospital_seconds,
        "engine_gp_python_us_per_record": 1e6 * gp_cpu / n,
        "engine_gp_redis_us_per_record": 1e6 * gp_redis / n,
        "engine_link_python_us_per_record": 1e6 * hospital_cpu / n,
        "engine_link_redis_us_per_record": 1e6 * hospital_redis / n,
        "engine_bytes_per_record": used / (2 * n),
        # growth of the linking process's resident memory: mostly the worker's mirror of
        # the scope (records, persons, references and the token index; docs/keyspace.md)
        "engine_worker_resident_bytes_per_record": resident / (2 * n),
        "engine_mirror_read_seconds_per_million_records": 1e6 * read_seconds / (2 * n),
        "engine_linked_fraction": report.linked_persons / n,
        # 1 when the linkage runs as mypyc-compiled extensions (`make setup`), else 0
        "engine_compiled": 0.0 if broker.linkage.engine.__file__.endswith(".py") else 1.0,
    }


def run_http(n: int) -> dict[str, float]:
    """Upload and link ``n`` GP then ``n`` hospital records through the HTTP API."""
    from client_sdk.client import BrokerClient
    from keys.derive import Token
    from keys.wire import DatasetDeclaration, Role
    from tests.support.harness import make_batch, start_broker

    pair = SyntheticPair(n)
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_broker(Path(tmp) / "broker")
        try:
            clients: list[BrokerClient] = []
            paths: list[Path] = []
            for org, people, salt in (
                ("gp", pair.gp_people, 1),
                ("acute", pair.hospital_people, 2),
            ):
                credential = broker.add_identity(Role.ORG, org)
                client = BrokerClient(broker.url, credential)
                client.declare_dataset(
                    DatasetDeclaration(
                        name="main",
                        one_record_per_person=True,
                        domain="bench",
                        spec_hash="bench-spec",
                        key_version="v1",
                        match_keys=list(KEYS),
                    )
                )
                path = Path(tmp) / f"{org}.tsb"
                make_batch(
                    path,
                    dataset="main",
                    refs=[RecordRef(r) for r in pair.refs(org, len(people))],
                    tokens=[
                        tuple(None if t is None else Token(t) for t in pair.tokens(p, salt))
                        for p in people
                    ],
                    chunk_size=CHUNK,
                    domain="bench",
                    spec_hash="bench-spec",
                    match_keys=KEYS,
                )
                clients.append(client)
                paths.append(path)
            uploads = [(client, path, n) for client, path in zip(clients, paths, strict=True)]
            timings, used = _timed_uploads(broker, uploads)
            for client in clients:
                client.close()
        finally:
            broker.stop()
    out = {
        f"http_{part}_{name}": value
        for part, numbers in zip(("gp", "link"), timings, strict=True)
        for name, value in numbers.items()
    }
    out["http_bytes_per_record_all"] = used / (2 * n)
    return out


def run_http_evidence(
    n: int, *, worker_process: bool = True, api_processes: int = 1
) -> dict[str, float]:
    """Upload and link a GP list and a hospital index through HTTP, with the evidence.

    The data of :func:`run_evidence` — a GP list of ``n`` records and a hospital index of
    about ``n`` (the independent model of :mod:`bench.spec_eval`) — tokenised by the SDK's
    own batch writer (``client_sdk.tokenise_batch.write_batch``, what ``tessera-sdk tokenise``
    runs) under the ``uk-health-probabilistic`` spec, so each batch file carries the
    probabilistic stage's block and comparison tokens. Each dataset is declared from its
    batch's manifest (as ``tessera-sdk dataset declare --from-batch`` does), then the GP
    batch is uploaded and linked, and the hospital batch is timed from the start of its
    upload until it is linked (``http_evidence_link_*``; tokenising is done beforehand and
    not timed). With ``worker_process`` (the default) the broker is ``serve
    --no-link-worker`` and a ``tessera-broker link-worker`` process links, so the broker's
    CPU figure is the HTTP requests, re-keying and storing, and the worker's
    (``worker_us_per_record``) the linking; without it the link worker is a thread of
    ``serve`` and the broker's figure holds both. ``api_processes`` above 1 runs ``serve
    --workers N`` (the broker's figure is then the sum over its API processes).
    """
    from bench.spec_eval import generate
    from broker.linkage_report import build_linkage_report
    from client_sdk.client import BrokerClient
    from client_sdk.local_index import LocalIndex
    from client_sdk.quality import assigned_birthdays
    from client_sdk.tokenise import TokeniseParams
    from client_sdk.tokenise_batch import write_batch
    from keys.batch import BatchReader
    from keys.derive import DomainKey
    from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec
    from keys.wire import DatasetDeclaration, Role
    from tests.support.harness import start_serving
    from tests.support.worker_support import api_processes as running_api
    from tests.support.worker_support import start_link_worker, wait_until

    datasets, _ = generate(n, practices=1, hospital_share=1.0)
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    domain_key = DomainKey(random.Random("bench-domain").randbytes(32))
    with tempfile.TemporaryDirectory() as tmp:
        batches: list[tuple[str, Path, int]] = []
        for org, records in (("gp", datasets["gp0"]), ("acute", datasets["hospital"])):
            orgdir = Path(tmp) / org
            orgdir.mkdir()
            params = TokeniseParams(
                spec=spec,
                domain_key=domain_key,
                domain="bench-health",
                key_version="v1",
                reference_secret=random.Random(org).randbytes(32),
                dataset="main",
                assigned_birthdays=assigned_birthdays(r.date_of_birth for r in records),
            )
            path = Path(tmp) / f"{org}.tsb"
            with LocalIndex.open(orgdir, "main") as index:
                write_batch(records, params, out=path, index=index, org=org)
            batches.append((org, path, len(records)))
        del datasets
        serve_args: tuple[str, ...] = ("--no-link-worker",) if worker_process else ()
        if api_processes > 1:
            serve_args += ("--workers", str(api_processes))
        broker = start_serving(Path(tmp) / "broker", serve_args, {})
        worker: LinkWorkerProcess | None = None
        try:
            if api_processes > 1 and broker.process is not None:
                supervisor = broker.process.pid
                wait_until(lambda: len(running_api(supervisor)) == api_processes, "API processes")
            if worker_process:
                worker = start_link_worker(broker, "link-worker")
            uploads: list[tuple[BrokerClient, Path, int]] = []
            for org, path, count in batches:
                client = BrokerClient(broker.url, broker.add_identity(Role.ORG, org))
                manifest = BatchReader(path).manifest
                client.declare_dataset(
                    DatasetDeclaration(
                        name=manifest.dataset,
                        one_record_per_person=True,
                        domain=manifest.domain,
                        spec_hash=manifest.spec_hash,
                        key_version=manifest.key_version,
                        match_keys=manifest.match_keys,
                        payload_columns=manifest.payload_columns,
                    )
                )
                uploads.append((client, path, count))
            batch_bytes = sum(path.stat().st_size for _, path, _ in batches)
            timings, used = _timed_uploads(broker, uploads, worker)
            (linkage,) = build_linkage_report(broker.runtime.store).domains
            for client, _, _ in uploads:
                client.close()
        finally:
            if worker is not None:
                worker.stop()
            broker.stop()
    total = sum(count for _, _, count in batches)
    out = {
        f"http_evidence_{part}_{name}": value
        for part, numbers in zip(("gp", "link"), timings, strict=True)
        for name, value in numbers.items()
    }
    out["http_evidence_link_records"] = batches[1][2]
    out["http_evidence_links"] = sum(linkage.links_by_key.values())
    # 1 once the broker fitted the probabilistic stage's model (it scored with it)
    out["http_evidence_model_fitted"] = 0.0 if linkage.probabilistic is None else 1.0
    out["http_evidence_batch_bytes_per_record"] = batch_bytes / total
    out["http_evidence_bytes_per_record_all"] = used / total
    return out


def _timed_uploads(
    broker: BrokerProcess,
    uploads: list[tuple[BrokerClient, Path, int]],
    worker: LinkWorkerProcess | None = None,
) -> tuple[list[dict[str, float]], int]:
    """Upload each batch in turn and wait until it is linked, timing each one.

    Each batch is timed from the start of its upload until the broker reports it linked
    (its records per second by the clock, and until the commit: the upload phase), with
    the CPU microseconds per record of this process (the client), of the broker's
    processes (HTTP, re-keying, storing, and the link worker thread when it runs inside
    ``serve``; and their share until the commit), of a separate link worker process if
    given, and of the redis-server (``INFO cpu``). Returns the timings, one per batch, and
    how many bytes Redis's ``used_memory`` grew by over them all.
    """
    from keys.wire import BatchState

    redis_client = broker.runtime.store.redis
    base = int(redis_client.info("memory")["used_memory"])
    from tests.support.worker_support import api_processes

    # the serving process and, under ``serve --workers N``, its API processes
    pids = [] if broker.process is None else [broker.process.pid]
    pids += [child for pid in pids for child in api_processes(pid)]
    worker_pids = [] if worker is None or worker.process is None else [worker.process.pid]
    timings: list[dict[str, float]] = []
    for client, path, records in uploads:
        linking: list[float] = []  # the clock and the broker's CPU when linking began

        def on_progress(step: UploadProgress, linking: list[float] = linking) -> None:
            if step.phase == "link" and not linking:
                linking += (time.perf_counter(), _process_cpu(*pids))

        started, cpu = time.perf_counter(), time.process_time()
        broker_cpu, redis_cpu = _process_cpu(*pids), _cpu(redis_client)
        worker_cpu = _process_cpu(*worker_pids)
        status = client.upload(path, wait_timeout=7200, poll=0.1, on_progress=on_progress)
        ended, broker_ended = time.perf_counter(), _process_cpu(*pids)
        if status.state is not BatchState.LINKED:
            raise RuntimeError(f"{path.name} ended {status.state}")
        committed, broker_committed = linking or (ended, broker_ended)
        worker_used = _process_cpu(*worker_pids) - worker_cpu
        timings.append(
            {
                "records_per_s": records / (ended - started),
                "upload_records_per_s": records / (committed - started),
                "client_us_per_record": 1e6 * (time.process_time() - cpu) / records,
                "broker_us_per_record": 1e6 * (broker_ended - broker_cpu) / records,
                # of which until the commit: receiving, re-keying and storing the chunks
                "broker_upload_us_per_record": 1e6 * (broker_committed - broker_cpu) / records,
                "redis_us_per_record": 1e6 * (_cpu(redis_client) - redis_cpu) / records,
                **({"worker_us_per_record": 1e6 * worker_used / records} if worker else {}),
            }
        )
    return timings, int(redis_client.info("memory")["used_memory"]) - base


def run_evidence(n: int) -> dict[str, float]:
    """Linking with the probabilistic stage through the engine, beside the cascade alone.

    A GP list of ``n`` records and a hospital index of about ``n`` (the independent model
    of :mod:`bench.spec_eval`, tokenised by the SDK with the ``uk-health-probabilistic``
    spec and re-keyed as ingest does: :func:`bench.probabilistic.engine_links`), linked
    once without the evidence and once with it. Reported per record linked: CPU
    microseconds of the linking process and of the redis-server (``INFO cpu``) — CPU
    time, not wall clock, since the machine is shared — over both datasets, and per
    phase: the GP list linked first (``gp``), then the hospital index against it
    (``hospital``, the phase the HTTP target times).
    """
    from bench.probabilistic import engine_links
    from bench.spec_eval import generate
    from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec

    datasets, truth = generate(n, practices=1, hospital_share=1.0)
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    records = len(truth)
    out: dict[str, float] = {"evidence_records": records}
    for stage, probabilistic in (("cascade", False), ("probabilistic", True)):
        _, measured = engine_links(spec, datasets, probabilistic=probabilistic)
        out[f"evidence_{stage}_broker_us_per_record"] = 1e6 * measured["link_cpu_s"] / records
        out[f"evidence_{stage}_redis_us_per_record"] = 1e6 * measured["redis_cpu_s"] / records
        out[f"evidence_{stage}_links"] = sum(measured["links_by_key"].values())
        for name, (cpu, redis_cpu) in measured["link_cpu_by_dataset"].items():
            phase = "hospital" if name == "hospital" else "gp"
            count = len(datasets[name])
            out[f"evidence_{stage}_{phase}_broker_us_per_record"] = 1e6 * cpu / count
            out[f"evidence_{stage}_{phase}_redis_us_per_record"] = 1e6 * redis_cpu / count
    return out


def run(n: int, evidence: int = 0) -> dict[str, float]:
    """Every ingest number at size ``n`` (records per dataset).

    ``evidence=1``: the HTTP path with the probabilistic stage alone
    (:func:`run_http_evidence`), ``make bench``'s own entry.
    """
    if evidence:
        return run_http_evidence(n)
    return {**run_engine(n), **run_http(n)}


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    part = sys.argv[2] if len(sys.argv) > 2 else "all"
    runner = {
        "engine": run_engine,
        "http": run_http,
        "http-evidence": run_http_evidence,
        "http-evidence-thread": lambda n: run_http_evidence(n, worker_process=False),
        "http-evidence-2api": lambda n: run_http_evidence(n, api_processes=2),
        "evidence": run_evidence,
    }.get(part, run)
    for name, value in runner(size).items():
        print(f"{name:<32} {value:>14,.2f}")
