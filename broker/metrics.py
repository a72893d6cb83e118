"""Prometheus metrics of a broker process, rendered at ``/metrics`` (docs/deploy.md).

Counters and histograms live in this process (each API process is scraped on its own, as
Prometheus expects); gauges about the shared state (link queue, audit checkpoints) are
read from the store at scrape time, so every process reports the same values for them.
Labels are bounded: a route is its template (``/v1/datasets/{name}``), never a path.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from broker.audit.records import AuditEntry, Checkpoint
from broker.store import keyspace
from broker.store.audit_log import read_entries, read_snapshot
from broker.store.client import Store

__all__ = [
    "CHUNKS_RECEIVED",
    "CONTENT_TYPE",
    "RECORDS_LINKED",
    "RECORDS_RECEIVED",
    "REGISTRY",
    "MetricsMiddleware",
    "count_redis_error",
    "render",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REGISTRY = CollectorRegistry()
"""This process's counters and histograms (not prometheus_client's global registry)."""

_REQUESTS = Counter(
    "tessera_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
_LATENCY = Histogram(
    "tessera_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
CHUNKS_RECEIVED = Counter(
    "tessera_chunks_received", "Upload chunks stored (a resend is not counted).", registry=REGISTRY
)
RECORDS_RECEIVED = Counter(
    "tessera_records_received", "Records in the upload chunks stored.", registry=REGISTRY
)
RECORDS_LINKED = Counter(
    "tessera_records_linked",
    "Records of batches this process's link worker linked.",
    registry=REGISTRY,
)
_REDIS_ERRORS = Counter(
    "tessera_redis_errors",
    "Errors from Redis, by where they surfaced (request, metrics).",
    ["where"],
    registry=REGISTRY,
)

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_Asgi = Callable[[_Scope, _Receive, _Send], Awaitable[None]]


def count_redis_error(exc: BaseException, *, where: str) -> bool:
    """Count ``exc`` as a Redis error if it is one (decided by its class's package)."""
    if type(exc).__module__.split(".", 1)[0] != "redis":
        return False
    _REDIS_ERRORS.labels(where=where).inc()
    return True


def _route_template(scope: _Scope) -> str:
    template = str(getattr(scope.get("route"), "path", "(unrouted)"))
    if str(scope.get("path", "")).startswith("/v1/") and not template.startswith("/v1"):
        template = "/v1" + template
    return template


class MetricsMiddleware:
    """Counts every HTTP request by route template and status, and times it."""

    def __init__(self, app: _Asgi) -> None:
        self._app = app

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """Pass the request on; record its status and duration when it is answered."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: _Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, recording_send)
        except Exception as exc:
            count_redis_error(exc, where="request")
            raise
        finally:
            method = str(scope.get("method", "-"))
            route = _route_template(scope)
            _REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            _LATENCY.labels(method=method, route=route).observe(time.perf_counter() - started)


class _StoreCollector(Collector):
    """Gauges read from the store once per scrape: the link queue and audit checkpoints."""

    def __init__(self, store: Store, now: datetime) -> None:
        self._store = store
        self._now = now

    def collect(self) -> Iterator[Metric]:
        """The store gauges; ``tessera_store_up`` is 0 (and nothing else) if Redis fails."""
        up = GaugeMetricFamily("tessera_store_up", "1 if Redis answered this scrape.")
        try:
            gauges = list(self._gauges())
        except Exception as exc:
            if not count_redis_error(exc, where="metrics"):
                raise
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from gauges

    def _gauges(self) -> Iterator[Metric]:
        redis = self._store.redis
        depth = int(redis.zcard(keyspace.link_queue()))
        yield GaugeMetricFamily(
            "tessera_link_queue_depth", "Committed batches waiting to be linked.", value=depth
        )
        lag = 0.0
        oldest = cast(list[bytes], redis.zrange(keyspace.link_queue(), 0, 0))
        if oldest:
            key = keyspace.batch(oldest[0].decode())
            committed = cast(bytes | None, redis.hget(key, "committed_at"))
            if committed:
                lag = max(0.0, (self._now - _parse_time(committed.decode())).total_seconds())
        yield GaugeMetricFamily(
            "tessera_link_queue_lag_seconds",
            "Age of the oldest committed batch not yet linked (0 when the queue is empty).",
            value=lag,
        )
        # the newest signed checkpoint: the head checkpoint written with each entry, else
        # (a log written before entries were signed as written) the newest periodic one
        snapshot = read_snapshot(self._store)
        entries = snapshot.length
        raw = snapshot.head_checkpoint or (
            snapshot.checkpoints[-1] if snapshot.checkpoints else None
        )
        checkpoint = Checkpoint.from_json(raw) if raw is not None else None
        covered = checkpoint.position + 1 if checkpoint is not None else 0
        yield GaugeMetricFamily(
            "tessera_audit_entries_unchecked",
            "Audit entries after the newest signed checkpoint.",
            value=max(0, entries - covered),
        )
        # an empty log has nothing waiting (0); entries no checkpoint covers have waited
        # since the first of them was written
        if checkpoint is not None:
            since: str | None = checkpoint.time
        elif entries:
            since = AuditEntry.from_json(read_entries(self._store, start=0, count=1)[0]).time
        else:
            since = None
        age = (self._now - _parse_time(since)).total_seconds() if since is not None else 0.0
        yield GaugeMetricFamily(
            "tessera_audit_checkpoint_age_seconds",
            "Seconds since the newest signed audit checkpoint (0 for an empty log).",
            value=max(0.0, age),
        )


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def render(store: Store, *, now: datetime | None = None) -> bytes:
    """The Prometheus text exposition of this process's metrics and the store gauges."""
    scrape = CollectorRegistry()
    scrape.register(_StoreCollector(store, now or datetime.now(UTC)))
    gauges = generate_latest(scrape)  # first, so a Redis error is counted in this scrape
    return generate_latest(REGISTRY) + gauges
