"""bench.ingest's HTTP part with the probabilistic stage runs end to end at a tiny size,
in the service shape (a link worker process beside ``serve --no-link-worker``) and with
the link worker a thread of ``serve``."""

from __future__ import annotations

import pytest

from bench.ingest import run_http_evidence

_TIMED = (
    "records_per_s",
    "upload_records_per_s",
    "client_us_per_record",
    "broker_us_per_record",
    "broker_upload_us_per_record",
    "redis_us_per_record",
)


@pytest.mark.parametrize("worker_process", [True, False])
def test_http_evidence_uploads_and_links_both_batches_with_the_stage(
    worker_process: bool,
) -> None:
    numbers = run_http_evidence(200, worker_process=worker_process)
    for part in ("gp", "link"):
        for figure in _TIMED:
            assert numbers[f"http_evidence_{part}_{figure}"] > 0
        # the link worker's own CPU is reported when it is a process of its own (at this
        # size it may round to no clock tick at all)
        worker = numbers.get(f"http_evidence_{part}_worker_us_per_record")
        assert (worker is not None and worker >= 0) is worker_process
    # the hospital index holds about as many records as the GP list, plus outsiders
    assert numbers["http_evidence_link_records"] >= 200
    # the batches carried evidence, and the broker fitted the stage's model with it
    assert numbers["http_evidence_model_fitted"] == 1.0
    assert numbers["http_evidence_links"] > 0
    assert numbers["http_evidence_batch_bytes_per_record"] > 0
