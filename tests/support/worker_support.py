"""Link workers and API processes as real processes, for the kill tests.

:class:`LinkWorkerProcess` runs ``tessera-broker link-worker`` with a broker's environment;
:func:`api_processes` finds the API processes ``serve --workers N`` runs, so that a test
can SIGKILL one of them; :func:`world_persons` reads a domain's persons in a form two
runs can be compared by (their ids are the scope's own).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from broker.store.client import Store
from broker.store.linkage_store import LinkageStore
from tests.support.harness import BrokerProcess

__all__ = ["LinkWorkerProcess", "api_processes", "start_link_worker", "wait_until", "world_persons"]

_STARTED = re.compile(r"link worker ([0-9a-f]{32}) started")


def wait_until(check: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class LinkWorkerProcess:
    """A ``tessera-broker link-worker`` subprocess."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    owner: str = ""

    def start(self) -> None:
        """Start it and wait for its ``started`` line (which names its lease owner id)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from broker.cli import main; main()", "link-worker"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()

        def started() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"link-worker exited at start: {self.log_text()}")
            found = _STARTED.findall(self.log_text())
            self.owner = found[-1] if found else ""
            return bool(found)

        wait_until(started, "the link worker to start")

    def kill(self) -> None:
        """SIGKILL it, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        """SIGTERM it and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_text(self) -> str:
        """Everything it logged."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_link_worker(broker: BrokerProcess, name: str, **extra_env: str) -> LinkWorkerProcess:
    """A link worker on ``broker``'s Redis and keystore, logging to ``<data>/<name>.log``."""
    env = broker.admin_env()
    env.update(extra_env)
    worker = LinkWorkerProcess(env=env, log_path=broker.data_dir / f"{name}.log")
    worker.start()
    return worker


def api_processes(supervisor: int) -> list[int]:
    """The pids of the API processes ``serve --workers`` (pid ``supervisor``) runs now."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    found = []
    for pid in map(int, children):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in command and os.path.exists(f"/proc/{pid}"):
            found.append(pid)
    return sorted(found)


def world_persons(store: Store, domain: str) -> set[frozenset[tuple[str, bytes]]]:
    """The domain's persons as sets of (dataset name, reference): comparable across runs."""
    persons = set()
    for _, records in LinkageStore(store.redis, scope=domain).iter_persons():
        persons.add(frozenset((r.dataset.partition("/")[2], bytes(r.ref)) for r in records))
    return persons
