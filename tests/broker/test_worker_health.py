"""The link worker's health port in one process (broker/worker_health.py), over real HTTP
on a Redis of its own: a stopped worker fails ``/healthz``, and ``/metrics`` admits the
metrics token and nothing that merely resembles it.

The real ``link-worker`` process (running, hung, port in use) is tests/e2e/test_worker_health.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.config import BrokerSettings
from broker.runtime import BrokerRuntime
from broker.store.embedded import EmbeddedRedis
from broker.worker import LinkWorker
from broker.worker_health import WorkerHealthServer
from tests.support.harness import free_port

TOKEN = "metrics-" + secrets.token_hex(16)


@pytest.fixture
def runtime(tmp_path: Path, private_redis: EmbeddedRedis) -> Iterator[BrokerRuntime]:
    opened = BrokerRuntime.open(
        BrokerSettings(
            data_dir=tmp_path / "broker",
            keystore_passphrase="test-" + secrets.token_hex(12),
            redis_url=private_redis.url,
            metrics_token=TOKEN,
            durable_writes=False,
        )
    )
    opened.store.redis.flushdb()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def served(runtime: BrokerRuntime) -> Iterator[tuple[LinkWorker, str]]:
    worker = LinkWorker(runtime, poll_seconds=0.05)
    port = free_port()
    server = WorkerHealthServer(worker, runtime, "127.0.0.1", port)
    worker.start()
    server.start()
    try:
        yield worker, f"http://127.0.0.1:{port}"
    finally:
        worker.stop()
        server.stop()


def test_a_stopped_worker_fails_healthz(served):
    worker, url = served
    assert httpx.get(url + "/healthz", timeout=5).text == "ok\n"
    worker.stop()
    answer = httpx.get(url + "/healthz", timeout=5)
    assert (answer.status_code, answer.text) == (503, "stopped\n")


def test_the_token_reads_the_metrics(served):
    _, url = served
    answer = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert answer.status_code == 200 and "tessera_records_linked_total" in answer.text


_header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=300)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    scheme=st.sampled_from(["Bearer", "bearer", "Basic", "Token", ""]),
    credential=st.one_of(
        _header_text,
        st.builds(lambda cut: TOKEN[:cut], st.integers(0, len(TOKEN) - 1)),
        st.builds(lambda extra: TOKEN + extra, _header_text.filter(bool)),
    ),
)
def test_nothing_but_the_token_or_an_admin_reads_the_metrics(served, scheme, credential):
    _, url = served
    header = f"{scheme} {credential}".strip()
    answer = httpx.get(url + "/metrics", headers={"Authorization": header}, timeout=5)
    assert answer.status_code in (401, 403)
    assert "tessera_" not in answer.text
