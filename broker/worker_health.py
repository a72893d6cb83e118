"""The health port of ``tessera-broker link-worker --health-port``: ``/healthz`` and ``/metrics``.

A link worker serves no API, so without this an orchestrator can only see whether its
process exists, not whether its loop still turns, and its ``tessera_records_linked_total``
is never scraped. This is the stdlib ``http.server`` in a thread (no new dependency):

- ``GET /healthz``: ``200 ok`` while the worker loop has beaten within its bound
  (:attr:`broker.worker.LinkWorker.stall_seconds`: the longer of three polls and the scope
  lease), else ``503`` with one word: ``stalled`` (a hung loop: a Redis call that never
  returns, a slice that never ends) or ``stopped`` (the worker thread is gone). It reads
  nothing from Redis, so a Redis outage, which the loop rides out by retrying, does not
  get the worker restarted.
- ``GET /metrics``: this process's registry (broker/metrics.py) and the store gauges, on
  the same rule as the API's ``/metrics`` (broker/api/metrics.py): a bearer token equal to
  ``TESSERA_BROKER_METRICS_TOKEN``, or an administrator's credential. The port binds
  127.0.0.1 unless told otherwise, but once it is opened to a scraper it is as exposed as
  the API's, and the metrics say as much, so they are no more public here.

When the broker has a certificate (``TESSERA_BROKER_TLS_CERT`` and ``_KEY``, as ``serve``
uses), the port speaks HTTPS with it, so a scraper's bearer token never crosses the
network in clear. It asks no client certificate even when ``TESSERA_BROKER_TLS_CLIENT_CA``
is set: a kubelet's probe presents none, and ``/metrics`` has its own credential.
"""

from __future__ import annotations

import logging
import secrets
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from broker import metrics
from broker.runtime import BrokerRuntime
from broker.store.identities import identity_for_credential
from broker.worker import LinkWorker
from keys.wire import Role

__all__ = ["WorkerHealthServer", "health_reason"]

logger = logging.getLogger(__name__)

_MAX_CREDENTIAL = 256


def health_reason(worker: LinkWorker) -> str | None:
    """Why ``worker`` is unhealthy in one word, or ``None`` while it is healthy."""
    if not worker.running:
        return "stopped"
    if worker.seconds_since_beat() > worker.stall_seconds:
        return "stalled"
    return None


def _metrics_status(runtime: BrokerRuntime, authorization: str | None) -> int:
    """200 if the ``Authorization`` header may read the metrics, else 401 or 403."""
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or len(credential) > _MAX_CREDENTIAL:
        return 401
    token = runtime.settings.metrics_token
    if token is not None and secrets.compare_digest(
        credential.encode(), token.get_secret_value().encode()
    ):
        return 200
    identity = identity_for_credential(runtime.store, runtime.credential_digest(credential))
    if identity is None:
        return 401
    return 200 if identity.role is Role.ADMIN else 403


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        """Answer ``/healthz`` and ``/metrics``; anything else is 404."""
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            reason = health_reason(self.server.worker)
            self._answer(200 if reason is None else 503, (reason or "ok").encode() + b"\n")
        elif path == "/metrics":
            self._metrics()
        else:
            self._answer(404, b"not found\n")

    def _metrics(self) -> None:
        runtime = self.server.runtime
        try:
            status = _metrics_status(runtime, self.headers.get("Authorization"))
        except Exception as exc:  # Redis down while checking an admin credential
            if not metrics.count_redis_error(exc, where="metrics"):
                raise
            self._answer(503, b"unavailable\n")
            return
        if status != 200:
            self._answer(status, b"unauthorised\n" if status == 401 else b"forbidden\n")
            return
        self._answer(200, metrics.render(runtime.store), metrics.CONTENT_TYPE)

    def _answer(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        """Probes come every few seconds: log them at DEBUG, not on stderr."""
        logger.debug("health port: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], worker: LinkWorker, runtime: BrokerRuntime
    ) -> None:
        self.worker = worker
        self.runtime = runtime
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        settings = runtime.settings
        if settings.tls_cert is not None and settings.tls_key is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
            # The handshake runs in the request's thread, not in the accepting loop, so a
            # client that stalls in it holds up no one else.
            self.socket = context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that drops, or speaks HTTP to the HTTPS port: one DEBUG line, no
        traceback on stderr (the stdlib's default)."""
        logger.debug("health port: request from %s failed", client_address[0], exc_info=True)


class WorkerHealthServer:
    """Serves a link worker's ``/healthz`` and ``/metrics`` on a thread of its own.

    Binding happens in the constructor, so a port taken since ``check_listen`` looked
    raises ``OSError`` before the worker starts.
    """

    def __init__(self, worker: LinkWorker, runtime: BrokerRuntime, host: str, port: int) -> None:
        self._server = _Server((host, port), worker, runtime)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="tessera-link-worker-health",
            daemon=True,
        )

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5.0)
        self._server.server_close()
