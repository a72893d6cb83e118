"""`make bench`: run every benchmark and write numbers that compare run to run.

Each benchmark module exposes ``run(n: int, ...) -> dict[str, float]``. Results go to
``bench/results/<UTC timestamp>.json`` and ``bench/results/latest.json`` with the machine's
core count and Python version, and a table on the terminal. Sizes come from the
environment so a quick run and the full run use the same code::

    make bench                      # full sizes (the issue targets)
    BENCH_SCALE=0.1 make bench      # a tenth of every size
    BENCH_ONLY=tokenise make bench  # one benchmark
    BENCH_ONLY=cluster BENCH_N=300000 make bench  # one size for every benchmark run
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"

# (module, keyword arguments at full scale)
BENCHMARKS: list[tuple[str, dict[str, int]]] = [
    ("normalise", {"n": 200_000}),
    ("tokenise", {"n": 1_000_000, "workers": 1}),
    ("tokenise", {"n": 1_000_000, "workers": 2}),
    # tokenise with evidence (uk-health-probabilistic): block and comparison tokens too
    ("tokenise", {"n": 1_000_000, "workers": 1, "evidence": 1}),
    ("install", {"n": 1_000_000}),  # the whole command from a fresh `pip install '.[sdk]'`
    ("ingest", {"n": 1_000_000}),
    # ingest + link through HTTP with the probabilistic stage (uk-health-probabilistic)
    ("ingest", {"n": 1_000_000, "evidence": 1}),
    ("cluster", {"n": 1_000_000}),  # the engine on the local Redis Cluster beside one node
    ("link_workers", {"n": 200_000}),  # two domains by one link-worker process, then by two
    ("populations", {"n": 30_000}),  # the default spec on other population structures
    ("audit", {"n": 20_000}),  # the cost per entry of signing every audit entry
    ("febrl", {"partial": 0}),  # FEBRL4 under the febrl spec (locality, region, addresses)
    ("febrl", {"partial": 1}),  # FEBRL4-partial
    ("probabilistic", {"n": 20_000}),  # cascade vs + probabilistic stage vs Splink
    ("rotation", {"n": 200_000}),  # a key rotation's switch: person ids carried over
]


def main() -> int:
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    size_text = os.environ.get("BENCH_N", "")
    if size_text and not (size_text.isdigit() and int(size_text) > 0):
        print(f"BENCH_N must be a positive whole number, not {size_text!r}", file=sys.stderr)
        return 2
    size = int(size_text) if size_text else None
    only = {x for x in os.environ.get("BENCH_ONLY", "").split(",") if x}
    results: list[dict[str, Any]] = []
    for name, kwargs in BENCHMARKS:
        if only and name not in only:
            continue
        scaled = {
            k: ((size or max(1, int(v * scale))) if k == "n" else v) for k, v in kwargs.items()
        }
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name} {scaled}", flush=True)
        started = time.perf_counter()
        numbers = module.run(**scaled)
        elapsed = time.perf_counter() - started
        results.append({"benchmark": name, "params": scaled, "seconds": elapsed, **numbers})
        for key, value in numbers.items():
            print(f"   {key:<32} {value:>14,.1f}")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    record = {
        "when": stamp,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "scale": scale,
        "results": results,
    }
    text = json.dumps(record, indent=2)
    (RESULTS / f"{stamp}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print(f"results written to {RESULTS / (stamp + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
