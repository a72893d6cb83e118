"""Running the app under uvicorn with the broker's connection limits (``serve``).

One process serves the app itself; ``serve --workers N`` binds the socket once and runs N
processes on it under uvicorn's supervisor, which starts a new process in place of one
that dies (each builds its app from a picklable factory, as a spawned process must).

uvicorn bounds idle keep-alive connections and, with ``limit_concurrency``, how many
connections and requests one process holds (503 beyond), but it waits for a request's
headers for ever: a client that sends a byte now and then holds a connection open at no
cost to itself. :class:`HeaderTimeoutProtocol` closes a connection whose request headers
are not complete within ``header_read_timeout_seconds`` of the connection opening or the
previous response ending. The body's own read timeout is the HTTP edge's
(broker/edge.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from broker.config import BrokerSettings
from broker.errors import ConfigurationError

__all__ = ["BrokerServerConfig", "HeaderTimeoutProtocol", "run_server"]

logger = logging.getLogger(__name__)


class BrokerServerConfig(uvicorn.Config):
    """uvicorn's configuration plus the header deadline (it travels to every process)."""

    header_timeout: float = 10.0


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's headers."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout = getattr(config, "header_timeout", BrokerServerConfig.header_timeout)
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and not self.transport.is_closing():
            logger.warning("closed a connection whose request headers came too slowly")
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the first request's header deadline."""
        super().connection_made(transport)
        self._arm_header_timer()

    def handle_events(self) -> None:
        """Stop the deadline once a request's headers are complete (a new cycle starts)."""
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        """Start the next request's header deadline."""
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadline with the connection."""
        self._disarm_header_timer()
        super().connection_lost(exc)


def run_server(app: Any, settings: BrokerSettings, *, workers: int = 1) -> None:
    """Serve on the configured address until SIGINT or SIGTERM.

    Args:
        app: the ASGI app; with ``workers`` above 1, a picklable function of no arguments
            that builds it (each process calls it).
        settings: the broker's settings.
        workers: processes sharing the listening socket.

    Raises:
        ConfigurationError: the one process did not start (its log says why).
    """
    config = BrokerServerConfig(
        app,
        host=settings.host,
        port=settings.port,
        http=HeaderTimeoutProtocol,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=32 * 1024,
        workers=workers,
        factory=workers > 1,
        **settings.uvicorn_tls_options(),
    )
    config.header_timeout = settings.header_read_timeout_seconds
    if workers == 1:
        server = uvicorn.Server(config)
        server.run()
        if not server.started:
            raise ConfigurationError("the HTTP server did not start; the log line above says why")
        return
    sock = config.bind_socket()
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
