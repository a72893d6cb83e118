"""bench.link_workers runs end to end at a tiny size and reports both rows."""

from __future__ import annotations

from bench.link_workers import run

_FIGURES = (
    "records_per_s",
    "worker_us_per_record",
    "busiest_worker_cpu_share",
    "redis_us_per_record",
    "domains_split",
)


def test_one_and_two_link_workers_both_report_their_row() -> None:
    numbers = run(150)
    assert set(numbers) == {f"{row}_{f}" for row in ("one_worker", "two_workers") for f in _FIGURES}
    for row in ("one_worker", "two_workers"):
        assert numbers[f"{row}_records_per_s"] > 0
        assert numbers[f"{row}_worker_us_per_record"] > 0  # the workers' CPU was read
        assert numbers[f"{row}_redis_us_per_record"] > 0
    # one process does all the work of its row; of two, neither can do more than all
    assert numbers["one_worker_busiest_worker_cpu_share"] == 1.0
    assert 0.5 <= numbers["two_workers_busiest_worker_cpu_share"] <= 1.0
    # a lone worker holds both domains in turn: never a split
    assert numbers["one_worker_domains_split"] == 0.0
