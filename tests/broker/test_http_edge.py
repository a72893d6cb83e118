"""The HTTP edge on a real broker: authentication before any body is read, streamed bytes
counted whatever the framing, bounded chunk inflation, media types, error bodies and
headers; the broker's own peak memory (VmHWM) is measured where a body could swell it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import struct
import subprocess
import sys
import threading
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from broker.app import create_app
from broker.config import BrokerSettings
from keys.wire import ErrorBody, Role
from tests.support.harness import BrokerProcess, free_port, start_broker, unique

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def edge_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker of this module's own, so that its peak memory is this module's doing, with
    small quotas and short read timeouts."""
    broker = start_broker(
        tmp_path_factory.mktemp("edge-broker"),
        TESSERA_BROKER_MAX_OPEN_BATCHES_PER_ORG="2",
        TESSERA_BROKER_MAX_DATASETS_PER_ORG="2",
        TESSERA_BROKER_MAX_DOMAINS_PER_ORG="1",
        TESSERA_BROKER_HEADER_READ_TIMEOUT_SECONDS="3",
        TESSERA_BROKER_BODY_READ_TIMEOUT_SECONDS="3",
    )
    yield broker
    broker.stop()


def _peak_mib(broker: BrokerProcess) -> float:
    """The broker process's peak resident memory so far (VmHWM), in MiB."""
    assert broker.process is not None
    status = Path(f"/proc/{broker.process.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _stream_chunked(
    broker: BrokerProcess, path: str, total: int, *, credential: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """POST ``total`` bytes with ``Transfer-Encoding: chunked`` over a raw socket, stopping
    when the broker stops reading; returns its status, headers and body."""
    host, port = broker.url.removeprefix("http://").split(":")
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
    ]
    if credential is not None:
        head.append(f"Authorization: Bearer {credential}")
    piece = b" " * MIB
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        try:
            while sent < total:
                sock.sendall(frame)
                sent += len(piece)
            sock.sendall(b"0\r\n\r\n")
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass  # the broker answered and stopped reading: what we want
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or len(answer) < _expected_length(answer):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (TimeoutError, ConnectionResetError):
            pass
    return _parse_response(answer)


def _expected_length(answer: bytes) -> int:
    head, _, _ = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(answer)


def _parse_response(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def test_unauthenticated_chunked_body_is_refused_before_it_is_read(edge_broker):
    before = _peak_mib(edge_broker)
    status, headers, body = _stream_chunked(edge_broker, "/v1/datasets", 200 * MIB)
    # buffering the body (the defect) raised the peak by the body's 200 MiB and more
    assert _peak_mib(edge_broker) - before < 32
    assert status == 401
    assert ErrorBody.model_validate_json(body).code == "unauthorised"
    assert headers["x-request-id"]


def test_authenticated_chunked_body_is_cut_off_at_the_limit(edge_broker):
    _, credential = edge_broker.add_org()
    limit = edge_broker.settings().max_json_bytes
    before = _peak_mib(edge_broker)
    status, _, body = _stream_chunked(edge_broker, "/v1/datasets", 100 * MIB, credential=credential)
    assert _peak_mib(edge_broker) - before < 2 * limit / MIB + 16
    assert status == 413
    assert ErrorBody.model_validate_json(body).code == "too_large"


def _declare(http: httpx.Client, name: str, domain: str = "edge-domain") -> httpx.Response:
    return http.post(
        "/v1/datasets",
        json={
            "name": name,
            "one_record_per_person": True,
            "domain": domain,
            "spec_hash": "spec-test-1",
            "key_version": "v1",
            "match_keys": ["nhs"],
            "payload_columns": ["age_band"],
        },
    )


def _manifest(dataset: str, chunks: list[bytes], **overrides: object) -> dict[str, object]:
    manifest: dict[str, object] = {
        "format_version": 1,
        "batch_id": uuid.uuid4().hex,
        "dataset": dataset,
        "domain": "edge-domain",
        "key_version": "v1",
        "spec_hash": "spec-test-1",
        "match_keys": ["nhs"],
        "payload_columns": ["age_band"],
        "record_count": 1,
        "chunk_digests": [hashlib.sha256(c).hexdigest() for c in chunks],
        "created_at": datetime.now(UTC).isoformat(),
        "quality": {},
    }
    manifest.update(overrides)
    return manifest


def _zlib_bomb(inflated: int) -> bytes:
    """A chunk whose header declares one record and one payload column, followed by
    ``inflated`` bytes of payload text that compress about a thousandfold."""
    names = json.dumps({"keys": ["nhs"], "payload": ["age_band"]}).encode()
    head = b"TSC1" + struct.pack(">IHH", 1, 1, 1) + struct.pack(">I", len(names)) + names
    head += bytes(16) + struct.pack(">I", 1) + bytes(16) + struct.pack(">I", inflated)
    deflate = zlib.compressobj(9)
    parts = [deflate.compress(head)]
    block = b" " * MIB
    parts += [deflate.compress(block) for _ in range(inflated // MIB)]
    parts.append(deflate.flush())
    return b"".join(parts)


def test_a_zlib_bomb_is_refused_without_inflating_it(edge_broker):
    bomb = _zlib_bomb(1024 * MIB)
    assert len(bomb) < 2 * MIB
    _, credential = edge_broker.add_org()
    name = unique("ds")
    with edge_broker.client(credential) as http:
        assert _declare(http, name).status_code == 201
        manifest = _manifest(name, [bomb])
        assert http.post(f"/v1/datasets/{name}/batches", json={"manifest": manifest}).is_success
        before = _peak_mib(edge_broker)
        response = http.put(
            f"/v1/datasets/{name}/batches/{manifest['batch_id']}/chunks/0",
            content=bomb,
            headers={"Content-Type": "application/octet-stream"},
        )
    # inflating it whole (the defect) took a GiB
    assert _peak_mib(edge_broker) - before < 64
    assert response.status_code == 422
    body = ErrorBody.model_validate(response.json())
    assert body.code == "bad_chunk"
    assert "inflates beyond what its header declares" in body.message


def _nested(depth: int) -> dict[str, object]:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return {"a": value}


def test_manifests_of_an_unknown_format_no_records_or_a_huge_quality_are_refused(edge_broker):
    _, credential = edge_broker.add_org()
    name = unique("ds")
    chunk = b"not-needed"
    with edge_broker.client(credential) as http:
        assert _declare(http, name).status_code == 201
        cases: list[tuple[dict[str, Any], str]] = [
            ({"format_version": 2}, "manifest.format_version"),
            ({"record_count": 0}, "manifest.record_count"),
            ({"quality": {"notes": ["x" * 1000] * 1100}}, "manifest.quality"),
            ({"quality": _nested(20)}, "manifest.quality"),
        ]
        for overrides, where in cases:
            response = http.post(
                f"/v1/datasets/{name}/batches",
                json={"manifest": _manifest(name, [chunk], **overrides)},
            )
            assert response.status_code == 422, overrides
            assert where in ErrorBody.model_validate(response.json()).message


def test_quotas_on_datasets_domains_and_open_batches(edge_broker):
    _, credential = edge_broker.add_org()
    first, second = unique("ds"), unique("ds")
    with edge_broker.client(credential) as http:
        assert _declare(http, first).status_code == 201
        other_domain = _declare(http, second, domain="another-domain")
        assert other_domain.status_code == 409
        assert other_domain.json()["code"] == "quota_exceeded"
        assert "linkage domains" in other_domain.json()["message"]
        assert _declare(http, second).status_code == 201
        assert _declare(http, first).status_code == 200  # the same again is no new dataset
        third = _declare(http, unique("ds"))
        assert third.status_code == 409
        assert "at most 2 datasets" in third.json()["message"]

        opened = [_manifest(first, [f"chunk {i}".encode()]) for i in range(3)]
        for manifest in opened[:2]:
            response = http.post(f"/v1/datasets/{first}/batches", json={"manifest": manifest})
            assert response.status_code == 201
        refused = http.post(f"/v1/datasets/{first}/batches", json={"manifest": opened[2]})
        assert refused.status_code == 409
        assert refused.json()["code"] == "quota_exceeded"
        resumed = http.post(f"/v1/datasets/{first}/batches", json={"manifest": opened[0]})
        assert resumed.is_success  # re-opening an open batch (to resume) is not a new one


def test_non_json_bodies_get_415_after_authentication(broker_server):
    _, credential = broker_server.add_org()
    with broker_server.client() as anonymous:
        response = anonymous.post(
            "/v1/datasets", content=b"hello", headers={"Content-Type": "text/plain"}
        )
    assert response.status_code == 401
    with broker_server.client(credential) as http:
        response = http.post(
            "/v1/datasets", content=b"hello", headers={"Content-Type": "text/plain"}
        )
    assert response.status_code == 415
    assert ErrorBody.model_validate(response.json()).code == "unsupported_media_type"


def test_malformed_and_deeply_nested_json_get_the_documented_body(broker_server):
    _, credential = broker_server.add_org()
    nested = b"[" * 100_000 + b"]" * 100_000
    headers = {"Content-Type": "application/json"}
    with broker_server.client() as anonymous:
        assert anonymous.post("/v1/datasets", content=nested, headers=headers).status_code == 401
    with broker_server.client(credential) as http:
        malformed = http.post("/v1/datasets", content=b'{"name": ', headers=headers)
        deep = http.post("/v1/datasets", content=nested, headers=headers)
    assert malformed.status_code == 422
    assert ErrorBody.model_validate(malformed.json()).message == "body: not valid JSON"
    assert deep.status_code in (400, 422)
    assert ErrorBody.model_validate(deep.json()).code in ("bad_request", "validation_failed")
    assert "detail" not in deep.json()
    assert deep.headers["x-request-id"]


def test_a_huge_audit_start_is_a_422_with_a_request_id(broker_server):
    auditor = broker_server.add_identity(Role.AUDITOR, unique("auditor"))
    with broker_server.client(auditor) as http:
        response = http.get("/v1/audit/entries", params={"start": 2**63})
    assert response.status_code == 422
    assert ErrorBody.model_validate(response.json()).code == "validation_failed"
    assert response.headers["x-request-id"]


def test_405_names_the_allowed_methods(broker_server):
    with broker_server.client() as http:
        response = http.delete("/v1/datasets")
    assert response.status_code == 405
    assert ErrorBody.model_validate(response.json()).code == "method_not_allowed"
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}


def test_403_on_an_org_public_key_does_not_echo_the_name(broker_server):
    admin = broker_server.add_identity(Role.ADMIN, unique("admin"))
    asked = unique("no-such-org")
    with broker_server.client(admin) as http:
        response = http.get(f"/v1/orgs/{asked}/public-key")
    assert response.status_code == 403
    assert asked not in response.text


def test_security_headers_everywhere_and_no_cdn_docs_by_default(broker_server):
    with broker_server.client() as http:
        responses = [http.get("/healthz"), http.get("/openapi.json"), http.get("/v1/whoami")]
        assert http.get("/docs").status_code == 404
        assert http.get("/redoc").status_code == 404
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-request-id"]
    assert responses[2].headers["cache-control"] == "no-store"


def test_failing_credentials_are_locked_out_per_credential(broker_server):
    org, credential = broker_server.add_org()
    broker_server.revoke(org)
    limit = broker_server.settings().max_auth_failures_per_credential
    # from an address of its own, so that no other test's failures count here
    transport = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(
        base_url=broker_server.url,
        headers={"Authorization": f"Bearer {credential}"},
        transport=transport,
    ) as http:
        statuses = [http.get("/v1/whoami").status_code for _ in range(limit + 1)]
    assert statuses == [401] * limit + [429]


def test_an_address_is_locked_out_after_its_failures_and_logged(broker_server):
    _, good = broker_server.add_org()
    limit = broker_server.settings().max_auth_failures_per_address
    transport = httpx.HTTPTransport(local_address="127.0.0.4")
    with httpx.Client(base_url=broker_server.url, transport=transport) as http:
        for _ in range(limit):
            bad = "tsk_" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            response = http.get("/v1/whoami", headers={"Authorization": f"Bearer {bad}"})
            assert response.status_code == 401
        locked = http.get("/v1/whoami", headers={"Authorization": f"Bearer {good}"})
    assert locked.status_code == 429
    assert ErrorBody.model_validate(locked.json()).code == "rate_limited"
    assert int(locked.headers["retry-after"]) > 0
    with broker_server.client(good) as http:  # another address is not locked out
        assert http.get("/v1/whoami").status_code == 200
    lines = [json.loads(x) for x in broker_server.log_text().splitlines() if x.startswith("{")]
    assert any(x.get("client") == "127.0.0.4" and "refused" in x["message"] for x in lines)


def _raw(broker: BrokerProcess, data: bytes) -> bytes:
    """Send ``data`` and read until the broker closes the connection (or 20 s pass)."""
    host, port = broker.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_connection_that_never_finishes_its_headers_is_closed(edge_broker):
    answer = _raw(edge_broker, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert answer == b""  # closed by the broker, not by the test's own timeout


def test_a_body_that_never_finishes_gets_408(edge_broker):
    _, credential = edge_broker.add_org()
    head = (
        "POST /v1/datasets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {credential}\r\nContent-Length: 100\r\n\r\n"
    )
    status, headers, body = _parse_response(_raw(edge_broker, head.encode() + b'{"name"'))
    assert status == 408
    assert ErrorBody.model_validate_json(body).code == "request_timeout"
    assert headers["x-request-id"]


def test_serve_debug_logs_at_debug_level(tmp_path):
    broker = BrokerProcess(
        url="",
        data_dir=tmp_path,
        env={},
        log_path=tmp_path / "broker.log",
    )
    port = free_port()
    broker.url = f"http://127.0.0.1:{port}"
    broker.env = {
        "TESSERA_BROKER_DATA_DIR": str(tmp_path),
        "TESSERA_BROKER_PORT": str(port),
        "TESSERA_BROKER_KEYSTORE_PASSPHRASE": "test-" + uuid.uuid4().hex,
    }
    with broker.log_path.open("ab") as log:
        broker.process = subprocess.Popen(
            [sys.executable, "-c", "from broker.cli import main; main()", "serve", "--debug"],
            env=broker.admin_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        broker.wait_ready()
    finally:
        broker.stop()
    lines = [json.loads(x) for x in broker.log_text().splitlines() if x.startswith("{")]
    assert any(x["level"] == "DEBUG" and "traceback" in x["message"] for x in lines)


def test_serve_without_debug_logs_no_debug_lines(broker_server):
    lines = [json.loads(x) for x in broker_server.log_text().splitlines() if x.startswith("{")]
    assert lines
    assert not any(x["level"] == "DEBUG" for x in lines)


def test_an_unhandled_error_is_a_500_error_body_with_a_request_id(tmp_path, caplog):
    """A route that fails unexpectedly (added through ``create_app``'s hooks, as modules
    outside app.py add theirs), served by uvicorn over real HTTP."""

    def failing_route() -> None:
        raise RuntimeError("a bug that never reaches the client")

    def add_failing_route(app: FastAPI) -> None:
        app.add_api_route("/v1/failing", failing_route, methods=["GET"])

    settings = BrokerSettings(
        data_dir=tmp_path,
        keystore_passphrase="test-" + uuid.uuid4().hex,
        port=free_port(),
    )
    app = create_app(settings, hooks=(add_failing_route,), link_worker=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the server did not start"
            thread.join(0.05)
        with caplog.at_level(logging.ERROR, logger="broker.http"):
            response = httpx.get(f"http://127.0.0.1:{settings.port}/v1/failing", timeout=30)
    finally:
        server.should_exit = True
        thread.join(60)
    assert response.status_code == 500
    body = ErrorBody.model_validate(response.json())
    assert body.code == "internal_error"
    assert "never reaches the client" not in response.text
    assert response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)
