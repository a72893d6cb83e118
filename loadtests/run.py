"""``make load``: start a real broker, run the locust scenarios headless, report latencies.

Bounded in time (``TESSERA_LOAD_SECONDS``, default 60) with ``TESSERA_LOAD_USERS`` users
(default 50). Prints p50/p95/p99 and failures per request type and in total, writes them
to ``loadtests/results/latest.json``, and exits 1 if any request failed.
"""

# ruff: noqa: I001  (locust must be imported first so that gevent patches the stdlib early)
from __future__ import annotations

import locust  # noqa: F401

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gevent  # type: ignore[import-untyped]
import httpx
from locust.env import Environment

from broker.config import BrokerSettings
from broker.runtime import BrokerRuntime, new_credential, utc_now
from broker.store.identities import create_identity
from keys.wire import Role
from loadtests import locustfile

RESULTS = Path(__file__).parent / "results"


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_broker(data_dir: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TESSERA_BROKER_")},
        "TESSERA_BROKER_DATA_DIR": str(data_dir),
        "TESSERA_BROKER_PORT": str(port),
        "TESSERA_BROKER_KEYSTORE_PASSPHRASE": "load-" + secrets.token_hex(12),
    }
    log = (data_dir / "broker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", "from broker.cli import main; main()", "serve"],
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return process, url, env
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"broker did not start; see {data_dir / 'broker.log'}")


def _credentials(data_dir: Path, passphrase: str, orgs: int) -> tuple[list[str], str]:
    settings = BrokerSettings(data_dir=data_dir, keystore_passphrase=passphrase)
    runtime = BrokerRuntime.open(settings, attach=True)
    made: list[str] = []
    try:
        for i in range(orgs + 1):
            credential = new_credential()
            role = Role.ADMIN if i == orgs else Role.ORG
            create_identity(
                runtime.store,
                identity_id="id_" + secrets.token_hex(8),
                name=f"load-{role.value}-{i}-{secrets.token_hex(3)}",
                role=role,
                digest=runtime.credential_digest(credential),
                now=utc_now(),
            )
            made.append(credential)
    finally:
        runtime.close()
    return made[:-1], made[-1]


def _row(name: str, entry: object) -> dict[str, object]:
    stats = entry  # locust.stats.StatsEntry
    return {
        "name": name,
        "requests": stats.num_requests,  # type: ignore[attr-defined]
        "failures": stats.num_failures,  # type: ignore[attr-defined]
        "p50_ms": stats.get_response_time_percentile(0.5),  # type: ignore[attr-defined]
        "p95_ms": stats.get_response_time_percentile(0.95),  # type: ignore[attr-defined]
        "p99_ms": stats.get_response_time_percentile(0.99),  # type: ignore[attr-defined]
        "rps": round(stats.total_rps, 1),  # type: ignore[attr-defined]
    }


def main() -> int:
    """Run the load test; returns the exit code."""
    seconds = float(os.environ.get("TESSERA_LOAD_SECONDS", "60"))
    users = int(os.environ.get("TESSERA_LOAD_USERS", "50"))
    with tempfile.TemporaryDirectory(prefix="tessera-load-") as tmp:
        data_dir = Path(tmp)
        process, url, env = _start_broker(data_dir)
        try:
            orgs, admin = _credentials(data_dir, env["TESSERA_BROKER_KEYSTORE_PASSPHRASE"], users)
            locustfile.CREDENTIALS[:] = orgs
            locustfile.ADMIN[:] = [admin]
            environment = Environment(
                user_classes=[
                    locustfile.OrgUploader,
                    locustfile.ReportReader,
                    locustfile.HealthReader,
                ],
                host=url,
            )
            runner = environment.create_local_runner()
            runner.start(users, spawn_rate=max(1, users // 5))
            print(f"load: {users} users against {url} for {seconds:.0f}s", file=sys.stderr)
            gevent.sleep(seconds)
            runner.quit()
            stats = environment.stats
            rows = [_row(name, entry) for (name, _), entry in sorted(stats.entries.items())]
            total = _row("TOTAL", stats.total)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    header = f"{'request':<24}{'count':>8}{'fail':>6}{'p50':>8}{'p95':>8}{'p99':>8}{'rps':>8}"
    print(header)
    for row in [*rows, total]:
        print(
            f"{row['name']!s:<24}{row['requests']:>8}{row['failures']:>6}"
            f"{row['p50_ms']:>8.0f}{row['p95_ms']:>8.0f}{row['p99_ms']:>8.0f}{row['rps']:>8}"
        )
    RESULTS.mkdir(exist_ok=True)
    result = {"users": users, "seconds": seconds, "requests": rows, "total": total}
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2))
    failures = int(total["failures"])  # type: ignore[call-overload]
    if failures:
        print(f"load: {failures} failed requests", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
