"""Locust scenarios for the broker: organisations uploading batches, report and health reads.

Run headless by ``loadtests/run.py`` (``make load``), which starts a broker, makes the
credentials and fills :data:`CREDENTIALS` and :data:`ADMIN`. Each simulated user is one
organisation with its own dataset: it opens small batches, sends their chunks (sometimes
one twice, as a retrying client would), asks for the batch status and commits.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

from locust import HttpUser, between, task

from keys.batch import BatchManifest
from keys.chunk import TokenChunk, chunk_digest, encode_chunk
from keys.derive import RecordRef, Token

__all__ = ["ADMIN", "CREDENTIALS", "HealthReader", "OrgUploader", "ReportReader"]

CREDENTIALS: list[str] = []
"""Organisation credentials, one per uploading user (filled by run.py)."""
ADMIN: list[str] = []
"""An administrator credential for report reads (filled by run.py): the report is admin-only."""

DOMAIN = "load-domain"
SPEC_HASH = "load-spec"
MATCH_KEYS = ["nhs", "name_dob", "name_postcode"]
RECORDS_PER_CHUNK = 250
CHUNKS_PER_BATCH = 2


def _chunk(rng: random.Random) -> bytes:
    refs = [RecordRef(rng.randbytes(16)) for _ in range(RECORDS_PER_CHUNK)]
    tokens = [
        tuple(Token(rng.randbytes(16)) if rng.random() > 0.1 else None for _ in MATCH_KEYS)
        for _ in refs
    ]
    return encode_chunk(TokenChunk(tuple(MATCH_KEYS), (), refs, tokens, [()] * len(refs)))


class OrgUploader(HttpUser):
    """An organisation uploading small batches back to back."""

    weight = 6
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        """Take a credential and declare this organisation's dataset."""
        self.credential = CREDENTIALS.pop() if CREDENTIALS else ""
        self.headers = {"Authorization": f"Bearer {self.credential}"}
        self.dataset = "load-" + uuid.uuid4().hex[:8]
        self.rng = random.Random()
        self.client.post(
            "/v1/datasets",
            json={
                "name": self.dataset,
                "one_record_per_person": True,
                "domain": DOMAIN,
                "spec_hash": SPEC_HASH,
                "key_version": "v1",
                "match_keys": MATCH_KEYS,
            },
            headers=self.headers,
            name="/v1/datasets",
        )

    @task
    def upload_batch(self) -> None:
        """Open a batch, send its chunks (one resent), check status, commit."""
        chunks = [_chunk(self.rng) for _ in range(CHUNKS_PER_BATCH)]
        batch_id = uuid.uuid4().hex
        manifest = BatchManifest(
            batch_id=batch_id,
            dataset=self.dataset,
            domain=DOMAIN,
            key_version="v1",
            spec_hash=SPEC_HASH,
            match_keys=MATCH_KEYS,
            payload_columns=[],
            record_count=RECORDS_PER_CHUNK * CHUNKS_PER_BATCH,
            chunk_digests=[chunk_digest(c) for c in chunks],
            created_at=datetime.now(UTC).isoformat(),
        )
        base = f"/v1/datasets/{self.dataset}/batches"
        self.client.post(
            base,
            json={"manifest": manifest.model_dump(), "mode": "append"},
            headers=self.headers,
            name="open batch",
        )
        octet = {**self.headers, "Content-Type": "application/octet-stream"}
        for index, data in enumerate(chunks):
            self.client.put(
                f"{base}/{batch_id}/chunks/{index}", data=data, headers=octet, name="put chunk"
            )
        if self.rng.random() < 0.2:
            self.client.put(
                f"{base}/{batch_id}/chunks/0",
                data=chunks[0],
                headers=octet,
                name="put chunk (resend)",
            )
        self.client.get(f"{base}/{batch_id}", headers=self.headers, name="batch status")
        self.client.post(f"{base}/{batch_id}/commit", headers=self.headers, name="commit")


class ReportReader(HttpUser):
    """An administrator reading the linkage report."""

    weight = 1
    wait_time = between(0.5, 1.5)

    @task
    def report(self) -> None:
        """GET the linkage report."""
        headers = {"Authorization": f"Bearer {ADMIN[0]}"} if ADMIN else {}
        self.client.get("/v1/linkage/report", headers=headers, name="linkage report")


class HealthReader(HttpUser):
    """A load balancer probing health and readiness."""

    weight = 1
    wait_time = between(0.2, 0.5)

    @task
    def probe(self) -> None:
        """GET /healthz and /readyz."""
        self.client.get("/healthz", name="/healthz")
        self.client.get("/readyz", name="/readyz")
