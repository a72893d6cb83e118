"""``tessera-broker serve`` and ``tessera-broker link-worker``: the broker's long-running processes.

``serve`` runs the HTTP API in one process, or in N processes sharing one listening socket
(``--workers N``); ``link-worker`` links committed batches and serves no API (only, with
``--health-port``, its health port: broker/worker_health.py). Everything that can stop
them is checked before anything starts — the ports, the keystore, Redis and its schema
version, the TLS files — so that a bad start is one line on stderr and a non-zero exit,
never a traceback in a log line.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import click

from broker.cli.operator import data_dir_option, load_settings, require_broker_data
from broker.config import BrokerSettings
from broker.errors import ConfigurationError
from broker.runtime import BrokerRuntime
from broker.store.embedded import EmbeddedRedis
from broker.worker import LinkWorker, drop_leases
from broker.worker_health import WorkerHealthServer
from keys.errors import BrokerError, DecryptionError
from keys.keystore import open_service_secrets

__all__ = ["check_listen", "link_worker_command", "open_keystore", "serve_command"]

logger = logging.getLogger(__name__)


def open_keystore(settings: BrokerSettings) -> None:
    """Create the data directory and keystore, or check that the keystore opens.

    Raises:
        ConfigurationError: no passphrase, or the keystore does not open with it.
    """
    passphrase = settings.keystore_passphrase
    if passphrase is None:
        raise ConfigurationError("set TESSERA_BROKER_KEYSTORE_PASSPHRASE")
    path = settings.resolved_keystore_path
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        open_service_secrets(path, passphrase.get_secret_value())
    except DecryptionError:
        raise ConfigurationError(
            f"the broker keystore {path.absolute()} does not open with "
            "TESSERA_BROKER_KEYSTORE_PASSPHRASE (a wrong passphrase, or the data of an "
            "earlier run: give its passphrase, or another TESSERA_BROKER_DATA_DIR)"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the broker data at {settings.data_dir.absolute()}: "
            f"{exc.strerror or type(exc).__name__}"
        ) from None


def check_listen(host: str, port: int) -> None:
    """Refuse a port out of range or already taken, before anything starts.

    Raises:
        ConfigurationError: one line naming the address.
    """
    if not 1 <= port <= 65535:
        raise ConfigurationError(f"port {port} is out of range (1 to 65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ConfigurationError(f"cannot listen on {host!r}: no such address") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror or "refused"
            raise ConfigurationError(f"cannot listen on {host}:{port}: {reason}") from None


def _log_level(settings: BrokerSettings) -> int | None:
    return logging.DEBUG if settings.debug else None


@dataclass(frozen=True, slots=True)
class _ApiProcess:
    """Builds one API process's app (``serve --workers``): pickled into each process.

    Each process attaches to the Redis the supervisor checked (the embedded one it
    started, or the external one) and runs a link worker only when asked to.
    """

    settings: BrokerSettings
    link_worker: bool
    log_level: int | None

    def __call__(self) -> Any:
        from broker.app import configure_json_logging, create_app

        configure_json_logging(self.log_level)
        return create_app(self.settings, link_worker=self.link_worker, attach=True)


def _supervise_embedded(runtime: BrokerRuntime, stop: threading.Event) -> None:
    """Restart the embedded redis-server the supervisor owns whenever it dies."""
    while not stop.wait(1.0):
        try:
            runtime.store.supervise()
        except BrokerError as exc:
            logger.error("cannot restart the embedded redis-server: %s", exc)


@click.command(name="serve")
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Port to bind (default 8470)."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="API processes sharing the port; one that dies is replaced.",
)
@click.option(
    "--link-worker/--no-link-worker",
    "link_worker",
    default=None,
    help="Also link batches in each API process (default: yes with one process, no with "
    "--workers above 1, where `tessera-broker link-worker` links). "
    "TESSERA_BROKER_LINK_WORKER sets it too.",
)
@data_dir_option
def serve_command(
    host: str | None,
    port: int | None,
    workers: int,
    link_worker: bool | None,
    data_dir: Path | None,
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json) until Ctrl-C or SIGTERM.

    Creates the data directory and keystore on first start. Without
    TESSERA_BROKER_REDIS_URL the broker starts its own redis-server under the data
    directory and stops it on exit (with --workers, the supervising process owns it and
    the API processes attach to it). A port in use, a keystore that does not open, Redis
    that does not answer or holds data of a newer schema version, or unusable TLS files
    stop it at once with one line on stderr and a non-zero exit. With --debug (or
    TESSERA_BROKER_DEBUG=1) it logs at DEBUG level with full tracebacks.
    """
    from broker.app import configure_json_logging, create_app
    from broker.server import run_server

    settings = load_settings(host=host, port=port, data_dir=data_dir, link_worker=link_worker)
    check_listen(settings.host, settings.port)
    open_keystore(settings)
    runs_worker = settings.link_worker if settings.link_worker is not None else workers == 1
    runtime = BrokerRuntime.open(settings)
    try:
        configure_json_logging(_log_level(settings))
        if workers == 1:
            app = create_app(settings, link_worker=runs_worker, runtime=runtime)
            run_server(app, settings)
            return
        if runtime.store.embedded is not None:
            drop_leases(runtime)  # it started the server: no worker can hold one
        stop = threading.Event()
        watcher = threading.Thread(
            target=_supervise_embedded, args=(runtime, stop), name="tessera-redis-watch"
        )
        watcher.start()
        try:
            factory = _ApiProcess(settings, runs_worker, _log_level(settings))
            run_server(factory, settings, workers=workers)
        finally:
            stop.set()
            watcher.join()
    finally:
        runtime.close()


@click.command(name="link-worker")
@click.option(
    "--health-port",
    type=click.IntRange(1, 65535),
    default=None,
    envvar="TESSERA_BROKER_LINK_WORKER_HEALTH_PORT",
    help="Serve /healthz and /metrics on this port (default: no health port). "
    "TESSERA_BROKER_LINK_WORKER_HEALTH_PORT sets it too.",
)
@click.option(
    "--health-host",
    default="127.0.0.1",
    show_default=True,
    envvar="TESSERA_BROKER_LINK_WORKER_HEALTH_HOST",
    help="Address the health port binds (0.0.0.0 for a probe from outside the host).",
)
@data_dir_option
def link_worker_command(health_port: int | None, health_host: str, data_dir: Path | None) -> None:
    """Link committed batches, serving no API, until Ctrl-C or SIGTERM.

    Run as many as you like on the broker's Redis: they share the linkage domains by
    lease (TESSERA_BROKER_LINK_LEASE_SECONDS, 30 s), and one takes over the domain of a
    worker that died once its lease has run out. It needs the broker data `serve` or
    `init` created (the same keystore); with the embedded Redis it attaches to the one a
    serving broker runs. With --health-port it serves /healthz (503 once its loop has
    hung) and /metrics (the metrics token or an admin credential, as the API's) there,
    over HTTPS when TESSERA_BROKER_TLS_CERT and TESSERA_BROKER_TLS_KEY are set.
    Errors at start, a health port in use among them, are one line on stderr and a
    non-zero exit.
    """
    from broker.app import configure_json_logging

    settings = load_settings(data_dir=data_dir)
    if health_port is not None:
        check_listen(health_host, health_port)
    require_broker_data(settings)
    open_keystore(settings)
    if settings.redis_url is None and not settings.redis_sentinel:
        if not EmbeddedRedis(settings.redis_dir).socket_path.exists():
            raise ConfigurationError(
                f"no broker is serving from {settings.data_dir.absolute()}: start "
                "`tessera-broker serve` first, or set TESSERA_BROKER_REDIS_URL"
            )
    runtime = BrokerRuntime.open(settings, attach=True)
    stopping = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        configure_json_logging(_log_level(settings))
        worker = LinkWorker(runtime)
        health = _health_server(worker, runtime, health_host, health_port)
        worker.start()
        if health is not None:
            health.start()
        logger.info("link worker %s started", worker.owner)
        while not stopping.wait(1.0):
            pass
        logger.info("link worker %s stopping", worker.owner)
        worker.stop()
        if health is not None:
            health.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        runtime.close()


def _health_server(
    worker: LinkWorker, runtime: BrokerRuntime, host: str, port: int | None
) -> WorkerHealthServer | None:
    """The health port's server, bound (not yet serving), or ``None`` without a port.

    Raises:
        ConfigurationError: the port was taken after ``check_listen`` looked.
    """
    if port is None:
        return None
    try:
        return WorkerHealthServer(worker, runtime, host, port)
    except ssl.SSLError as exc:
        raise ConfigurationError(
            "cannot serve the health port over TLS with TESSERA_BROKER_TLS_CERT and "
            f"TESSERA_BROKER_TLS_KEY: {exc.reason or 'unreadable'}"
        ) from None
    except OSError as exc:
        reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror or "refused"
        raise ConfigurationError(f"cannot listen on {host}:{port}: {reason}") from None
