"""bench.ingest's HTTP part with the probabilistic stage runs end to end at a tiny size."""

from __future__ import annotations

from bench.ingest import run_http_evidence

_TIMED = (
    "records_per_s",
    "upload_records_per_s",
    "client_us_per_record",
    "broker_us_per_record",
    "broker_upload_us_per_record",
    "redis_us_per_record",
)


def test_http_evidence_uploads_and_links_both_batches_with_the_stage() -> None:
    numbers = run_http_evidence(200)
    for part in ("gp", "link"):
        for figure in _TIMED:
            assert numbers[f"http_evidence_{part}_{figure}"] > 0
    # the hospital index holds about as many records as the GP list, plus outsiders
    assert numbers["http_evidence_link_records"] >= 200
    # the batches carried evidence, and the broker fitted the stage's model with it
    assert numbers["http_evidence_model_fitted"] == 1.0
    assert numbers["http_evidence_links"] > 0
    assert numbers["http_evidence_batch_bytes_per_record"] > 0
