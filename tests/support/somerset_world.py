"""The Somerset case end to end through the real CLIs, on synthetic data with ground truth.

A custodian makes a linkage domain; two GP practices, an acute trust and the opt-out
register holder each make their identity, install the domain key, tokenise their
extract (keeping their local index), declare their dataset and upload it to the shared
test broker. These set-up steps run the real CLI commands in-process (click's runner:
about thirty interpreter start-ups saved); tests then create agreements with
``tessera-broker admin agreement create`` and drive releases with ``tessera-sdk`` as
subprocesses. Built once per test process (mark users with
``pytest.mark.xdist_group("somerset")``).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import click
from click.testing import CliRunner

from broker.cli import cli as broker_cli
from broker.store.linkage_store import LinkageStore
from broker.store.rotation_store import active_scope
from client_sdk.cli import cli as sdk_cli
from client_sdk.local_index import LocalIndex
from keys.cli import cli as keys_cli
from keys.derive import RecordRef
from tessera_synth import generate
from tests.support.harness import BrokerProcess, unique

__all__ = ["Org", "Somerset", "build_somerset", "run", "shared_somerset"]

BIN = Path(sys.executable).parent
KEYS_PASSPHRASE = "test-only custodian passphrase"
ORG_PASSPHRASE = "test-only organisation passphrase"


def run(args: list[str], *, env: dict[str, str], cwd: Path, check: bool = True):
    """Run one CLI (``tessera-…``) from the venv."""
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def invoke(
    group: click.Group,
    args: list[str],
    *,
    env: dict[str, str | None],
    log: list[str] | None = None,
    secret_stdout: bool = False,
) -> str:
    """Run a CLI command in-process; returns its stdout.

    Args:
        log: keeps the output for the leak check (stderr only when ``secret_stdout``: a
            command that prints a new credential once, on stdout, by design).
    """
    result = CliRunner().invoke(group, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, f"{args}: {result.stderr}"
    if log is not None:
        log += [result.stderr] if secret_stdout else [result.stdout, result.stderr]
    return result.stdout


@dataclass
class Org:
    """One organisation of the world."""

    name: str
    dataset: str
    source: str
    directory: Path
    credential: str = ""


@dataclass
class Somerset:
    """The world: broker, directory, domain, organisations, researcher and the truth."""

    broker: BrokerProcess
    root: Path
    domain: str
    orgs: dict[str, Org]
    researcher: str = ""
    researcher_credential: str = ""
    truth: dict[tuple[str, str], str] = field(default_factory=dict)
    """``(source dataset, local id)`` -> true person id."""
    outputs: list[str] = field(default_factory=list)

    def env(self, credential: str | None = None) -> dict[str, str]:
        """Environment of an SDK or keys command (with a broker credential if given)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
        env["TESSERA_KEYS_PASSPHRASE"] = KEYS_PASSPHRASE
        env["TESSERA_SDK_PASSPHRASE"] = ORG_PASSPHRASE
        if credential is not None:
            env["TESSERA_SDK_TOKEN"] = credential
            env["TESSERA_SDK_BROKER_URL"] = self.broker.url
        return env

    def sdk(self, credential: str | None, *args: str, check: bool = True):
        """``tessera-sdk ARGS`` under a credential; output kept for the leak check."""
        result = run(["tessera-sdk", *args], env=self.env(credential), cwd=self.root, check=check)
        self.outputs += [result.stdout, result.stderr]
        return result

    def admin(self, *args: str, check: bool = True):
        """``tessera-broker admin ARGS`` on the broker host."""
        result = run(
            ["tessera-broker", "admin", *args],
            env=self.broker.admin_env(),
            cwd=self.root,
            check=check,
        )
        self.outputs += [result.stdout, result.stderr]
        return result

    def dataset_id(self, key: str) -> str:
        """``org/dataset`` of one of the world's organisations."""
        org = self.orgs[key]
        return f"{org.name}/{org.dataset}"

    def create_agreement(
        self, toml_text: str, *, approve: bool = True, subprocess: bool = False
    ) -> str:
        """``admin agreement create`` from TOML text; each contributor approves it.

        In-process unless ``subprocess`` (each interpreter start-up costs seconds here).
        """
        path = self.root / f"{unique('agreement')}.toml"
        path.write_text(toml_text, encoding="utf-8")
        args = ["agreement", "create", "--file", str(path)]
        if subprocess:
            agreement_id = self.admin(*args).stdout.strip()
        else:
            env: dict[str, str | None] = {**self.broker.env}
            agreement_id = invoke(broker_cli, ["admin", *args], env=env, log=self.outputs)
            agreement_id = agreement_id.strip()
        if approve:
            contributors = [o for o in self.orgs.values() if f'"{o.name}"' in toml_text]
            for org in sorted(contributors, key=lambda o: o.name):
                self.approve(org, agreement_id)
        return agreement_id

    def approve(self, org: Org, agreement_id: str) -> str:
        """``tessera-sdk agreement approve`` (in-process) under the organisation's credential."""
        env: dict[str, str | None] = {
            "TESSERA_SDK_TOKEN": org.credential,
            "TESSERA_SDK_BROKER_URL": self.broker.url,
        }
        result = CliRunner().invoke(sdk_cli, ["agreement", "approve", agreement_id], env=env)
        assert result.exit_code == 0, result.output
        self.outputs.append(result.output)
        return result.stderr

    def broker_persons(self) -> dict[tuple[str, str], int]:
        """``(source dataset, local id)`` -> the broker's person, through each local index."""
        store = self.broker.runtime.store
        linkage = LinkageStore(store.redis, scope=active_scope(store, self.domain))
        by_dataset: dict[str, list[tuple[bytes, int]]] = defaultdict(list)
        for pid, records in linkage.iter_persons():
            for record in records:
                by_dataset[record.dataset].append((bytes(record.ref), pid))
        found: dict[tuple[str, str], int] = {}
        for org in self.orgs.values():
            held = by_dataset.get(f"{org.name}/{org.dataset}", [])
            with LocalIndex.open(org.directory, org.dataset) as index:
                local = index.lookup([RecordRef(ref) for ref, _ in held])
            for ref, person in held:
                found[(org.source, local[RecordRef(ref)])] = person
        return found

    def linkage_errors(self, sources: set[str]) -> int:
        """Records of ``sources`` whose broker person is not exactly their true person.

        A record counts when its broker person holds a record of another true person, or
        its true person's records are spread over more than one broker person.
        """
        placed = {k: v for k, v in self.broker_persons().items() if k[0] in sources}
        truth = {k: v for k, v in self.truth.items() if k[0] in sources}
        members: dict[int, set[str]] = defaultdict(set)
        spread: dict[str, set[int]] = defaultdict(set)
        for key, pid in placed.items():
            members[pid].add(truth[key])
            spread[truth[key]].add(pid)
        errors = 0
        for key, true_id in truth.items():
            placed_pid = placed.get(key)
            if placed_pid is None or len(members[placed_pid]) > 1 or len(spread[true_id]) > 1:
                errors += 1
        return errors


def build_somerset(broker: BrokerProcess, root: Path, *, persons: int = 500) -> Somerset:
    """Generate the data, run the key ceremony, tokenise and upload every extract."""
    data = root / "data"
    summary = generate(data, persons=persons, seed=2026, practices=2)
    world = Somerset(broker, root, unique("somerset"), {})
    tag = unique("x")[2:]
    for ds in summary.datasets:
        key = ds.kind if ds.kind != "gp" else ds.name
        name = {"hospital": f"trust-{tag}", "optout": f"ndop-{tag}"}.get(ds.kind, f"{key}-{tag}")
        dataset = {"hospital": "pas", "optout": "register"}.get(ds.kind, "registrations")
        world.orgs[key] = Org(name, dataset, ds.name, root / name)
    with (data / "truth.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            world.truth[(row["dataset"], row["local_id"])] = row["person_id"]
    env: dict[str, str | None] = {
        "TESSERA_KEYS_PASSPHRASE": KEYS_PASSPHRASE,
        "TESSERA_SDK_PASSPHRASE": ORG_PASSPHRASE,
    }
    admin_env: dict[str, str | None] = {**broker.env}
    keystore = ["--keystore", str(root / "custodian.keystore")]
    invoke(keys_cli, ["init", *keystore], env=env, log=world.outputs)
    invoke(keys_cli, ["domain", "create", world.domain, *keystore], env=env, log=world.outputs)
    custodian = invoke(keys_cli, ["identity", *keystore], env=env, log=world.outputs).strip()
    for ds in summary.datasets:
        org = next(o for o in world.orgs.values() if o.source == ds.name)
        orgdir = str(org.directory)
        blob = str(root / f"{org.name}.tkey")
        invoke(
            sdk_cli,
            ["init", "--org", org.name, "--dir", orgdir, "--custodian", custodian],
            env=env,
            log=world.outputs,
        )
        invoke(
            keys_cli,
            ["grant", world.domain, "--org", org.name,
             "--public-key", str(org.directory / "public-key.json"), "--out", blob, *keystore],
            env=env,
            log=world.outputs,
        )  # fmt: skip
        invoke(sdk_cli, ["install-key", blob, "--dir", orgdir], env=env, log=world.outputs)
        org.credential = invoke(
            broker_cli,
            ["admin", "org", "add", org.name],
            env=admin_env,
            log=world.outputs,
            secret_stdout=True,
        )
        org.credential = org.credential.strip()
        batch = str(root / f"{org.name}.tsb")
        invoke(
            sdk_cli,
            ["tokenise", str(ds.path), "--mapping", str(ds.mapping), "--dir", orgdir,
             "--domain", world.domain, "--dataset", org.dataset, "--out", batch, "--no-progress"],
            env=env,
            log=world.outputs,
        )  # fmt: skip
        declare = ["dataset", "declare", org.dataset, "--from-batch", batch]
        declare.append("--one-record-per-person")
        with_broker = {
            **env,
            "TESSERA_SDK_TOKEN": org.credential,
            "TESSERA_SDK_BROKER_URL": broker.url,
        }
        invoke(sdk_cli, declare, env=with_broker, log=world.outputs)
        invoke(sdk_cli, ["upload", batch, "--no-progress"], env=with_broker, log=world.outputs)
        if ds.kind == "optout":
            # Only the operator makes a dataset an opt-out register, for a named body.
            register = ["admin", "opt-out-register", "declare", f"{org.name}/{org.dataset}"]
            register += ["--body", "NHS England: National Data Opt-out"]
            invoke(broker_cli, register, env=admin_env, log=world.outputs)
    world.researcher = unique("researcher")
    world.researcher_credential = invoke(
        broker_cli,
        ["admin", "researcher", "add", world.researcher],
        env=admin_env,
        log=world.outputs,
        secret_stdout=True,
    ).strip()
    return world


_SHARED: dict[str, Somerset] = {}


def shared_somerset(broker: BrokerProcess, root: Path) -> Somerset:
    """The world on ``broker``, built once per test process (``root`` is used the first time)."""
    if broker.url not in _SHARED:
        _SHARED[broker.url] = build_somerset(broker, root)
    return _SHARED[broker.url]
