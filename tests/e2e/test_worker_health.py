"""``tessera-broker link-worker --health-port``: ``/healthz`` and ``/metrics`` of a real
link-worker process, over real HTTP.

- a running worker answers ``/healthz`` 200; one whose loop hangs (every Redis call
  blocked by ``CLIENT PAUSE``) answers 503 ``stalled``, and 200 again once it turns;
- ``/metrics`` counts the records the worker linked, on the API's rule (the metrics token
  or an admin credential; an organisation's credential is refused), and the token never
  reaches the worker's log;
- a health port in use is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from client_sdk.client import BrokerClient
from keys.batch import BatchReader
from keys.wire import BatchState, Role
from tests.support.harness import (
    BrokerProcess,
    declaration_for,
    free_port,
    make_batch,
    random_refs,
    random_tokens,
    start_serving,
    unique,
)
from tests.support.tls_material import make_tls_material
from tests.support.worker_support import LinkWorkerProcess, start_link_worker, wait_until

_LINKED = re.compile(r"^tessera_records_linked_total (\S+)$", re.MULTILINE)


def _linked(body: str) -> float:
    (value,) = _LINKED.findall(body)
    return float(value)


def _health(port: int) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


def _metrics(port: int, credential: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    return httpx.get(f"http://127.0.0.1:{port}/metrics", headers=headers, timeout=30)


def _broker(tmp_path: Path, **env: str) -> BrokerProcess:
    return start_serving(tmp_path / "broker", ("--no-link-worker",), env)


def _worker(broker: BrokerProcess, port: int) -> LinkWorkerProcess:
    return start_link_worker(
        broker, unique("worker"), TESSERA_BROKER_LINK_WORKER_HEALTH_PORT=str(port)
    )


def _upload(broker: BrokerProcess, tmp_path: Path, records: int) -> None:
    _, credential = broker.add_org()
    domain = unique("dom")
    path = tmp_path / f"{domain}.tsb"
    make_batch(
        path,
        dataset="gp",
        refs=random_refs(records, seed=1),
        tokens=random_tokens(records, 2, seed=1),
        domain=domain,
    )
    manifest = BatchReader(path).manifest
    with BrokerClient(broker.url, credential) as client:
        client.declare_dataset(declaration_for(manifest))
        assert client.upload(path, poll=0.05).state is BatchState.LINKED


def test_metrics_count_what_the_worker_linked_for_the_token_or_an_admin_only(tmp_path):
    token = "metrics-" + secrets.token_hex(16)
    broker = _broker(tmp_path, TESSERA_BROKER_METRICS_TOKEN=token)
    port = free_port()
    worker = _worker(broker, port)
    try:
        assert _health(port).status_code == 200
        before = _linked(_metrics(port, token).text)
        _upload(broker, tmp_path, 120)
        response = _metrics(port, token)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert _linked(response.text) == before + 120
        assert "tessera_link_queue_depth 0.0" in response.text  # the store gauges too
        admin = broker.add_identity(Role.ADMIN, unique("admin"))
        assert _linked(_metrics(port, admin).text) == before + 120
        _, org = broker.add_org()
        assert _metrics(port, org).status_code == 403
        assert _metrics(port, "not-" + token).status_code == 401
        assert _metrics(port, None).status_code == 401
        assert "tessera_records_linked" not in _metrics(port, None).text
        assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404
    finally:
        worker.stop()
        broker.stop()
    assert token not in worker.log_text()


def test_a_hung_loop_fails_healthz_until_it_turns_again(tmp_path):
    # A one-second lease: the loop may go max(3 polls, 1 s) without a beat.
    broker = _broker(tmp_path, TESSERA_BROKER_LINK_LEASE_SECONDS="1")
    port = free_port()
    worker = _worker(broker, port)
    try:
        assert _health(port).status_code == 200
        # Every Redis call of the worker (its queue poll among them) now blocks.
        broker.runtime.store.redis.client_pause(8000)
        wait_until(lambda: _health(port).status_code == 503, "/healthz to fail", timeout=8)
        assert _health(port).text.strip() == "stalled"
        wait_until(lambda: _health(port).status_code == 200, "/healthz to recover", timeout=30)
        assert _health(port).text.strip() == "ok"
    finally:
        worker.stop()
        broker.stop()


def _link_worker(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from broker.cli import main; main()", "link-worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("by", ["option", "environment"])
def test_a_health_port_in_use_is_one_line(tmp_path, by):
    broker = _broker(tmp_path)
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            env = broker.admin_env()
            if by == "option":
                result = _link_worker("--health-port", str(port), env=env)
            else:
                env["TESSERA_BROKER_LINK_WORKER_HEALTH_PORT"] = str(port)
                result = _link_worker(env=env)
        assert result.returncode == 22  # a configuration error
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines == [lines[0]] and f"cannot listen on 127.0.0.1:{port}: in use" in lines[0]
    finally:
        broker.stop()


def test_with_the_brokers_certificate_the_health_port_speaks_https_only(tmp_path):
    """The scrape token must not cross the pod network in clear: with a certificate the
    port answers HTTPS (verified against the CA), and a plain-HTTP request gets nothing."""
    tls = make_tls_material(tmp_path / "tls")
    token = "metrics-" + secrets.token_hex(16)
    broker = _broker(tmp_path, TESSERA_BROKER_METRICS_TOKEN=token)
    port = free_port()
    worker = start_link_worker(
        broker,
        unique("worker"),
        TESSERA_BROKER_LINK_WORKER_HEALTH_PORT=str(port),
        TESSERA_BROKER_TLS_CERT=str(tls.server_cert),
        TESSERA_BROKER_TLS_KEY=str(tls.server_key),
    )
    try:
        with httpx.Client(verify=tls.context(), timeout=5) as client:
            wait_until(lambda: _https_ok(client, f"https://localhost:{port}/healthz"), "/healthz")
            metrics = client.get(
                f"https://localhost:{port}/metrics", headers={"Authorization": f"Bearer {token}"}
            )
            assert metrics.status_code == 200 and "tessera_records_linked_total" in metrics.text
            with pytest.raises(httpx.TransportError):
                _health(port)  # plain HTTP
            assert client.get(f"https://localhost:{port}/healthz").text.strip() == "ok"
    finally:
        worker.stop()
        broker.stop()
    assert token not in worker.log_text()
    assert "Traceback" not in worker.log_text()


def _https_ok(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.TransportError:
        return False
