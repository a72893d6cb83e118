"""Tokenisation throughput with the default UK health spec, or with the evidence.

``run(n, workers, evidence)`` tokenises under the default spec (``evidence=0``) or under
``uk-health-probabilistic`` (``evidence=1``: the same match keys plus the probabilistic
stage's block and comparison tokens, docs/probabilistic.md). It builds an n-row GP
extract from the SDK's synthetic generator (60,000 people at most; beyond that rows
repeat under fresh local ids, so the per-field caches of names, dates and postcodes hit
more often than on a real extract of n different people; NHS numbers are never cached)
and reports:

- ``read_normalise_cpu_us_per_record``: CPU time of this process to read the CSV and
  normalise it (``iter_records``, one process, records kept in a list);
- ``tokenise_rec_per_s``: wall clock, normalised records → encoded token chunks (tokens,
  references, chunk encoding and compression) with ``workers`` processes; the records are
  read beforehand and frozen out of the garbage collector's view, as a streaming run never
  holds them all;
- ``tokenise_cpu_us_per_record`` and ``tokenise_rec_per_cpu_s``: the same per CPU time of
  this process (one worker only), which a machine busy with other work disturbs less than
  the wall clock: the issue's one-core target is ``tokenise_rec_per_cpu_s`` ≥ 60,000. With
  one worker the tokenising pass runs three times and the fastest counts, as ``timeit``
  does: other processes on a shared machine only ever slow a pass down (evicting caches,
  taking the core's turbo budget), so the fastest is the best estimate of the code's own
  speed; ``tokenise_rec_per_cpu_s_median`` is the median pass, for comparison;
- ``end_to_end_rec_per_s``: wall clock of what ``tessera-sdk tokenise --workers N`` does:
  read the CSV, normalise, tokenise, write the batch file and the local index (workers
  normalise and tokenise their own blocks; this process reads and writes);
- ``end_to_end_cpu_us_per_record``: CPU time of this process in that run: everything with
  one worker, only the reading and writing with more (the share that does not scale);
- ``tokens_per_record``: match-key tokens emitted per record on this data (the evidence's
  block and comparison tokens are not counted);
- ``compiled``: 1 when the hot path runs as mypyc-compiled extensions (``make setup``),
  0 when it runs as plain Python.

    .venv/bin/python -m bench.tokenise [N] [WORKERS] [EVIDENCE]
"""

from __future__ import annotations

import csv
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import client_sdk.pipeline
from client_sdk.local_index import LocalIndex
from client_sdk.mapping import load_mapping
from client_sdk.pipeline import iter_records, record_blocks
from client_sdk.quality import QualityCollector
from client_sdk.tokenise import TokeniseParams
from client_sdk.tokenise_batch import chunk_records_for, tokenise_records, write_batch
from keys.derive import DomainKey
from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec
from tessera_synth import generate

__all__ = ["run"]

_POPULATION = 60_000
_PASSES = 3


def _extract(directory: Path, n: int) -> tuple[Path, Path]:
    summary = generate(directory / "synth", persons=min(n, _POPULATION), seed=1, practices=1)
    gp = next(d for d in summary.datasets if d.kind == "gp")
    with gp.path.open(encoding=gp.encoding, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    id_col = header.index(load_mapping(gp.mapping).record.id)  # type: ignore[arg-type]
    out = directory / "extract.csv"
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i in range(n):
            row = list(rows[i % len(rows)])
            row[id_col] = str(i)
            writer.writerow(row)
    return out, gp.mapping


def run(n: int, workers: int = 1, evidence: int = 0) -> dict[str, float]:
    """Records per second (wall and CPU) of tokenising alone and of the whole command.

    ``evidence=1`` tokenises with the probabilistic spec's evidence.
    """
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        extract, mapping_path = _extract(directory, n)
        mapping = load_mapping(mapping_path)
        params = TokeniseParams(
            spec=default_spec(PROBABILISTIC_SPEC_NAME) if evidence else default_spec(),
            domain_key=DomainKey(b"\x01" * 32),
            domain="bench-health",
            key_version="v1",
            reference_secret=b"\x02" * 32,
            dataset="bench",
            payload_columns=tuple(mapping.payload.columns),
        )
        cpu_started = time.process_time()
        records = list(iter_records(extract, mapping, report=QualityCollector()))
        read_cpu = time.process_time() - cpu_started
        gc.freeze()
        walls: list[float] = []
        cpus: list[float] = []
        for _ in range(_PASSES if workers == 1 else 1):
            started, cpu_started = time.perf_counter(), time.process_time()
            tokens = 0
            for chunk in tokenise_records(records, params, workers=workers):
                tokens += sum(chunk.token_counts)
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu_started)
        tokenise_seconds, tokenise_cpu = min(walls), min(cpus)
        del records
        gc.unfreeze()
        gc.collect()

        orgdir = directory / "org"
        orgdir.mkdir()
        started, cpu_started = time.perf_counter(), time.process_time()
        with LocalIndex.open(orgdir, "bench") as index:
            summary = write_batch(
                record_blocks(
                    extract,
                    mapping,
                    report=QualityCollector(),
                    size=chunk_records_for(params.spec),
                ),
                params,
                out=directory / "bench.batch",
                index=index,
                workers=workers,
            )
        end_to_end_seconds = time.perf_counter() - started
        end_to_end_cpu = time.process_time() - cpu_started
    count = summary.manifest.record_count
    one = workers == 1
    return {
        "records": float(count),
        "read_normalise_cpu_us_per_record": read_cpu / count * 1e6,
        "tokenise_rec_per_s": count / tokenise_seconds,
        "tokenise_cpu_us_per_record": tokenise_cpu / count * 1e6 if one else 0.0,
        "tokenise_rec_per_cpu_s": count / tokenise_cpu if one else 0.0,
        "tokenise_rec_per_cpu_s_median": count / statistics.median(cpus) if one else 0.0,
        "end_to_end_rec_per_s": count / end_to_end_seconds,
        "end_to_end_cpu_us_per_record": end_to_end_cpu / count * 1e6,
        "tokens_per_record": tokens / count if count else 0.0,
        "compiled": 0.0 if client_sdk.pipeline.__file__.endswith(".py") else 1.0,
    }


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    procs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    with_evidence = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    for key, value in run(size, procs, with_evidence).items():
        print(f"{key:<34} {value:>14,.1f}")
