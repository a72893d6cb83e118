"""`make demo`: the main job end to end, every role played with the real CLIs.

On synthetic Somerset data (``tessera-sdk synth``): the custodian's key ceremony, each
organisation's quality check, tokenisation and upload to a real broker (embedded
redis-server, real uvicorn, real HTTP), linkage and its precision and recall against the
ground truth, a direct-care agreement (each practice's patients-at-risk list) and a
research agreement (a cohort and aggregate tables), and the audit verification. Then a
short summary, and the broker stays up with its pages until Ctrl-C.

Environment: ``DEMO_SIZE`` persons (default 100,000), ``DEMO_PRACTICES`` (default 3),
``DEMO_SEED`` (default 2026), ``DEMO_KEEP=0`` to stop at once, ``DEMO_OUT`` (default
``demo-out``), ``DEMO_PORT`` (default: a free port). Every secret (passphrases,
credentials) is made at random for the run, passed to the CLIs in their environment, and
never printed or written in the clear.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
DOMAIN = "somerset-health"
SPEC = Path(__file__).resolve().parents[1] / "keys" / "specs" / "uk-health-probabilistic.toml"
"""Every organisation tokenises with the probabilistic spec: the printed precision and
recall include the broker's probabilistic stage (docs/probabilistic.md)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Org:
    """An organisation as the demo plays it."""

    name: str
    dataset: str
    extract: Path
    mapping: Path
    one_record_per_person: bool
    description: str
    credential: str = ""
    records: int = 0

    @property
    def directory(self) -> Path:
        return Path(os.environ.get("DEMO_OUT", "demo-out")) / "orgs" / self.name


@dataclass
class Summary:
    """Lines of the closing summary, in order."""

    steps: list[tuple[str, float, str]] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)


class Demo:
    """Runs the steps; each CLI runs as a subprocess with its secrets in its environment."""

    def __init__(self) -> None:
        self.size = int(os.environ.get("DEMO_SIZE", "100000"))
        self.practices = int(os.environ.get("DEMO_PRACTICES", "3"))
        self.seed = int(os.environ.get("DEMO_SEED", "2026"))
        self.keep = os.environ.get("DEMO_KEEP", "1") != "0"
        self.out = Path(os.environ.get("DEMO_OUT", "demo-out")).resolve()
        self.port = int(os.environ.get("DEMO_PORT", "0")) or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.summary = Summary()
        self.env = dict(os.environ)
        self.env.update(
            {
                "TESSERA_KEYS_PASSPHRASE": secrets.token_urlsafe(24),
                "TESSERA_KEYS_KEYSTORE": str(self.out / "custodian" / "custodian.tks"),
                "TESSERA_SDK_PASSPHRASE": secrets.token_urlsafe(24),
                "TESSERA_SDK_BROKER_URL": self.url,
                "TESSERA_BROKER_KEYSTORE_PASSPHRASE": secrets.token_urlsafe(24),
                "TESSERA_BROKER_DATA_DIR": str(self.out / "broker"),
                "TESSERA_BROKER_PORT": str(self.port),
            }
        )
        self.env.pop("TESSERA_BROKER_REDIS_URL", None)
        self.env.pop("TESSERA_SDK_TOKEN", None)
        self.broker: subprocess.Popen[bytes] | None = None
        self.orgs: list[Org] = []

    # -- plumbing -----------------------------------------------------------------------

    def cli(self, *args: str | Path | int, token: str | None = None, quiet: bool = True) -> str:
        """Run a Tessera CLI; its stdout is returned, a failure stops the demo."""
        env = dict(self.env)
        if token is not None:
            env["TESSERA_SDK_TOKEN"] = token
        command = [str(BIN / str(args[0])), *map(str, args[1:])]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
            raise SystemExit(f"demo: `{' '.join(map(str, args[:3]))} …` failed")
        if not quiet:
            sys.stdout.write(result.stdout)
        return result.stdout

    @contextmanager
    def step(self, title: str) -> Iterator[list[str]]:
        """Time a step; the yielded list collects its one-line result."""
        print(f"\n== {title}", flush=True)
        notes: list[str] = []
        started = time.perf_counter()
        yield notes
        elapsed = time.perf_counter() - started
        self.summary.steps.append((title, elapsed, "; ".join(notes)))
        print(f"   done in {elapsed:.1f} s{': ' + '; '.join(notes) if notes else ''}", flush=True)

    # -- the roles ----------------------------------------------------------------------

    def synthesise(self) -> None:
        with self.step(f"Synthetic Somerset: {self.size:,} persons") as notes:
            data = self.out / "data"
            self.cli(
                "tessera-sdk", "synth", "--persons", self.size, "--seed", self.seed,
                "--out", data, "--practices", self.practices,
            )  # fmt: skip
            practices = sorted(p.stem for p in data.glob("gp_*.csv"))
            for name in practices:
                self.orgs.append(
                    Org(
                        name,
                        name,
                        data / f"{name}.csv",
                        data / f"mapping_{name}.toml",
                        True,
                        f"GP practice {name[3:]} registered patients",
                    )  # fmt: skip
                )
            self.orgs.append(
                Org(
                    "hospital",
                    "hospital",
                    data / "hospital.csv",
                    data / "mapping_hospital.toml",
                    True,
                    "Acute trust patient administration extract",
                )  # fmt: skip
            )
            self.optout = Org(
                "ndop", "optout", data / "optout.csv", data / "mapping_optout.toml", True,
                "National data opt-out register",
            )  # fmt: skip
            notes.append(f"{len(practices)} GP practices, a hospital, an opt-out register")

    def key_ceremony(self) -> None:
        with self.step("Key ceremony (custodian and each organisation)") as notes:
            (self.out / "custodian").mkdir(parents=True)
            self.cli("tessera-keys", "init")
            self.cli("tessera-keys", "domain", "create", DOMAIN)
            # read out by phone in real life; each organisation pins it and installs only
            # grants it signed
            custodian = self.cli("tessera-keys", "identity").strip()
            for org in [*self.orgs, self.optout]:
                self.cli(
                    "tessera-sdk", "init", "--org", org.name, "--dir", org.directory,
                    "--custodian", custodian,
                )  # fmt: skip
                grant = self.out / "custodian" / f"{org.name}.grant"
                self.cli(
                    "tessera-keys", "grant", DOMAIN, "--org", org.name,
                    "--public-key", org.directory / "public-key.json", "--out", grant,
                )  # fmt: skip
                token = self.cli("tessera-broker", "admin", "org", "add", org.name).strip()
                org.credential = token
                self.cli("tessera-sdk", "register-key", "--dir", org.directory, token=token)
                self.cli("tessera-broker", "admin", "key-blob", "add", grant, "--org", org.name)
                self.cli("tessera-sdk", "fetch-key", "--dir", org.directory, token=token)
            notes.append(
                f"domain {DOMAIN} v1 granted to {len(self.orgs) + 1} organisations "
                f"(HPKE, signed by custodian {custodian})"
            )

    def prepare_and_upload(self) -> None:
        """Each organisation checks, tokenises and uploads its own extract."""
        grades: list[str] = []
        for org in [*self.orgs, self.optout]:
            with self.step(f"{org.name}: quality check, tokenise, upload") as notes:
                batches = self.out / "batches"
                batches.mkdir(exist_ok=True)
                report = batches / f"{org.dataset}.quality.json"
                self.cli("tessera-sdk", "check", org.extract, "--mapping", org.mapping,
                         "--json", report)  # fmt: skip
                quality = json.loads(report.read_text())
                grades.append(f"{org.dataset} {quality['grade']}")
                batch = batches / f"{org.dataset}.batch"
                started = time.perf_counter()
                self.cli(
                    "tessera-sdk", "tokenise", org.extract, "--mapping", org.mapping,
                    "--spec", SPEC, "--dir", org.directory, "--domain", DOMAIN,
                    "--dataset", org.dataset, "--out", batch, "--workers", "2",
                )  # fmt: skip
                tokenised = time.perf_counter() - started
                org.records = int(quality["records_used"])
                self.cli(
                    "tessera-sdk", "dataset", "declare", org.dataset, "--from-batch", batch,
                    "--one-record-per-person" if org.one_record_per_person
                    else "--many-records-per-person", "--description", org.description,
                    token=org.credential,
                )  # fmt: skip
                started = time.perf_counter()
                self.cli("tessera-sdk", "upload", batch, "--dataset", org.dataset, "--wait",
                         "--no-progress", token=org.credential)  # fmt: skip
                uploaded = time.perf_counter() - started
                if org is self.optout:  # only the operator makes a dataset a register
                    self.cli("tessera-broker", "admin", "opt-out-register", "declare",
                             f"{org.name}/{org.dataset}", "--body", org.description)  # fmt: skip
                notes.append(
                    f"grade {quality['grade']}, {org.records:,} records, tokenised at "
                    f"{org.records / tokenised:,.0f}/s, uploaded and linked at "
                    f"{org.records / uploaded:,.0f}/s"
                )
        self.summary.facts.append(("Quality grades", ", ".join(grades)))

    def evaluate(self) -> None:
        with self.step("Linkage report and precision/recall against the ground truth") as notes:
            truth_files: list[str | Path] = []
            for org in [*self.orgs, self.optout]:
                out = self.out / "evaluation" / f"{org.dataset}.truth-refs.csv"
                out.parent.mkdir(exist_ok=True)
                truth = self.out / "data" / "truth.csv"
                self.cli("tessera-sdk", "truth-refs", "--truth", truth, "--dir", org.directory,
                         "--dataset", org.dataset, "--out", out)  # fmt: skip
                truth_files += ["--truth", out]
            result_file = self.out / "evaluation" / "linkage.json"
            self.cli("tessera-broker", "evaluate", *truth_files, "--domain", DOMAIN,
                     "--json", result_file)  # fmt: skip
            report = self.cli("tessera-broker", "report")
            (self.out / "evaluation" / "report.txt").write_text(report)
            result = json.loads(result_file.read_text())
            self.precision, self.recall = float(result["precision"]), float(result["recall"])
            notes.append(f"precision {self.precision:.4f}, recall {self.recall:.4f}")
            self.summary.facts.append(
                ("Linkage precision / recall", f"{self.precision:.4f} / {self.recall:.4f} "
                 f"({result['correct_pairs']:,} of {result['true_pairs']:,} true pairs)")
            )  # fmt: skip

    def agreement(self, name: str, toml: str) -> str:
        """The operator creates an agreement; every contributing organisation approves it.

        The operator also writes its DPIA pack, Markdown and HTML, beside the TOML.
        """
        path = self.out / "agreements" / f"{name}.toml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(toml)
        created = self.cli("tessera-broker", "admin", "agreement", "create", "--file", path)
        agreement_id = created.split()[0].strip()
        contributors = {
            line.split('"')[1] for line in toml.splitlines() if line.startswith("org =")
        }
        for org in self.orgs:
            if org.name in contributors:
                self.cli("tessera-sdk", "agreement", "approve", agreement_id, token=org.credential)
        for suffix in (".md", ".html"):
            pack = path.with_name(f"{name}-dpia{suffix}")
            self.cli("tessera-broker", "admin", "agreement", "dpia", agreement_id, "--out", pack)
        if not any(label == "DPIA packs" for label, _ in self.summary.facts):
            self.summary.facts.append(("DPIA packs", str(path.parent)))
        return agreement_id

    def _dates(self, *, care: bool = False) -> str:
        """The dates and the governance fields the ICO data sharing code asks for."""
        today = date.today()
        start, end = today - timedelta(days=1), today + timedelta(days=365)
        if care:
            basis = (
                'article_6 = "Art 6(1)(e) public task"\n'
                'article_9 = "Art 9(2)(h) health or social care"\n'
                'confidentiality_basis = "direct_care"\n'
                'controllers = ["The Somerset GP practices", "Somerset NHS Foundation Trust"]\n'
                'objective = "Practices offer a care review to patients at risk of emergency '
                'admission."\n'
            )
        else:
            basis = (
                'article_6 = "Art 6(1)(e) public task"\n'
                'article_9 = "Art 9(2)(j) archiving, research and statistics"\n'
                'confidentiality_basis = "s251"\n'
                'controllers = ["Somerset Integrated Care Board"]\n'
                'objective = "Evidence for where to put community frailty services."\n'
            )
        return (
            f"start = {start}\nend = {end}\n"
            + basis
            + 'processors = ["Tessera broker operator (demo)"]\n'
            'dpia_reference = "DEMO-DPIA-001"\n'
            'individual_rights = "Practice and trust privacy notices; the National Data '
            "Opt-out is applied where it applies; requests go to each controller's DPO.\"\n"
            'quality_checks = "Each organisation reviews its SDK quality report before upload; '
            'the broker reports linkage rates."\n'
            f"retention_until = {end + timedelta(days=365)}\n"
            'secure_deletion = "Recipients delete released files within 30 days of the '
            'retention date and confirm in writing to the controllers."\n'
            f"review_dates = [{start + timedelta(days=182)}, {end}]\n"
        )

    def direct_care(self) -> None:
        with self.step("Direct care: each practice's patients at risk") as notes:
            practices = [o for o in self.orgs if o.name.startswith("gp_")]
            hospital = next(o for o in self.orgs if o.name == "hospital")
            blocks = "".join(
                f'[[datasets]]\norg = "{o.name}"\nname = "{o.dataset}"\n'
                'fields = ["LTC_COUNT", "FRAILTY_INDEX"]\n\n'
                for o in practices
            )
            toml = (
                'title = "Finding patients at risk of emergency admission"\n'
                'purpose = "Each practice sees which of its own patients attend A&E or are '
                'admitted as emergencies, so that it can offer them a care review."\n'
                'legal_basis = "UK GDPR Art 6(1)(e) with Art 9(2)(h)"\n'
                'kind = "direct_care"\n'
                f"organisations = {json.dumps([o.name for o in practices])}\n"
                + self._dates(care=True)
                + "\n"
                + blocks
                + f'[[datasets]]\norg = "{hospital.name}"\nname = "{hospital.dataset}"\n'
                'fields = ["AE_ATTENDANCES_12M", "EMERGENCY_ADMISSIONS_12M"]\n'
            )
            agreement_id = self.agreement("direct-care", toml)
            rules = Path(__file__).resolve().parents[1] / "client_sdk" / "data" / "risk_rules.toml"
            lists: list[str] = []
            for org in practices:
                outputs = self.out / "practices" / org.name
                outputs.mkdir(parents=True)
                self.cli("tessera-sdk", "linked", "--agreement", agreement_id,
                         "--dir", org.directory, "--out", outputs / "linked.csv",
                         token=org.credential)  # fmt: skip
                self.cli("tessera-sdk", "risk", "--linked", outputs / "linked.csv",
                         "--rules", rules, "--out", outputs / "at-risk.csv")  # fmt: skip
                at_risk = len(_read_csv(outputs / "at-risk.csv"))
                lists.append(f"{org.name} {at_risk:,}")
            notes.append(f"agreement {agreement_id}; patients at risk: " + ", ".join(lists))
            self.summary.facts.append(("Patients-at-risk lists", str(self.out / "practices")))

    def research(self) -> None:
        with self.step("Research: a pseudonymised cohort and aggregate tables") as notes:
            researcher = "dr-avery"
            token = self.cli("tessera-broker", "admin", "researcher", "add", researcher).strip()
            practice = next(o for o in self.orgs if o.name.startswith("gp_"))
            hospital = next(o for o in self.orgs if o.name == "hospital")
            toml = (
                'title = "Frailty, long-term conditions and emergency care in Somerset"\n'
                'purpose = "To learn how frailty and long-term conditions relate to A&E '
                'attendances and emergency admissions, to plan community services."\n'
                'legal_basis = "Section 251 of the NHS Act 2006"\n'
                'kind = "research_record_level"\n'
                f'researchers = ["{researcher}"]\n' + self._dates() + "\n"
                f'[[datasets]]\norg = "{practice.name}"\nname = "{practice.dataset}"\n'
                'fields = ["AGE_BAND", "LTC_COUNT", "FRAILTY_INDEX"]\n\n'
                f'[[datasets]]\norg = "{hospital.name}"\nname = "{hospital.dataset}"\n'
                'fields = ["AE_ATTENDANCES_12M", "EMERGENCY_ADMISSIONS_12M"]\n'
            )
            agreement_id = self.agreement("research", toml)
            tables = (
                toml.replace('kind = "research_record_level"', 'kind = "research_aggregate"')
                .replace('title = "', 'title = "Tables: ')
                .replace('"AGE_BAND", "LTC_COUNT", "FRAILTY_INDEX"', '"AGE_BAND", "LTC_COUNT"')
                .replace('"AE_ATTENDANCES_12M", "EMERGENCY_ADMISSIONS_12M"',
                         '"EMERGENCY_ADMISSIONS_12M"')
            )  # fmt: skip
            tables_id = self.agreement("research-tables", tables)
            outputs = self.out / "research"
            outputs.mkdir()
            gp_id, hosp_id = (f"{o.name}/{o.dataset}" for o in (practice, hospital))
            self.cli("tessera-sdk", "cohort", "--agreement", agreement_id,
                     "--require", gp_id, "--require", hosp_id,
                     "--out", outputs / "cohort.csv", token=token)  # fmt: skip
            self.cli("tessera-sdk", "aggregate", "--agreement", tables_id,
                     "--by", f"{gp_id}.AGE_BAND", "--by", f"{hosp_id}.EMERGENCY_ADMISSIONS_12M",
                     "--out", outputs / "aggregate.csv", token=token)  # fmt: skip
            cohort = len(_read_csv(outputs / "cohort.csv"))
            expected = self._true_cohort(practice.dataset, hospital.dataset)
            notes.append(
                f"agreements {agreement_id}, {tables_id}; cohort {cohort:,} persons "
                f"(ground truth {expected:,}, opted-out persons removed)"
            )
            self.summary.facts.append(("Researcher cohort and tables", str(outputs)))

    def _true_cohort(self, *datasets: str) -> int:
        """Persons truly in every one of ``datasets`` and not on the opt-out register."""
        members: dict[str, set[str]] = {}
        for row in _read_csv(self.out / "data" / "truth.csv"):
            members.setdefault(row["dataset"], set()).add(row["person_id"])
        persons = set.intersection(*(members.get(d, set()) for d in datasets))
        return len(persons - members.get(self.optout.dataset, set()))

    def audit(self) -> None:
        with self.step("Audit: verify the hash chain and signed checkpoints") as notes:
            self.cli("tessera-broker", "audit", "checkpoint")
            verified = self.cli("tessera-broker", "audit", "verify")
            self.cli("tessera-broker", "audit", "export", "--out", self.out / "audit.jsonl")
            notes.append(verified.strip().splitlines()[-1] if verified.strip() else "verified")

    def start_broker(self) -> None:
        with self.step(f"Broker up at {self.url} (embedded redis-server)") as notes:
            log = (self.out / "broker.log").open("wb")
            self.broker = subprocess.Popen(
                [str(BIN / "tessera-broker"), "serve", "--port", str(self.port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if self.broker.poll() is not None:
                    raise SystemExit(f"demo: the broker exited; see {self.out / 'broker.log'}")
                try:
                    if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                        notes.append("ready")
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            raise SystemExit("demo: the broker did not become ready")

    def stop_broker(self) -> None:
        """Stop the broker (and so its redis-server); a second Ctrl-C does not cut this short."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if self.broker is not None and self.broker.poll() is None:
                self.broker.send_signal(signal.SIGTERM)
                try:
                    self.broker.wait(30)
                except subprocess.TimeoutExpired:
                    self.broker.kill()
                    self.broker.wait()
            self.broker = None
        finally:
            signal.signal(signal.SIGINT, previous)

    def run(self) -> int:
        # Ctrl-C and a plain `kill` both end the demo through the same clean stop, even when
        # it was started in the background (where SIGINT arrives ignored).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        if self.out.exists():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True)
        try:
            self.synthesise()
            self.start_broker()
            self.key_ceremony()
            self.prepare_and_upload()
            self.evaluate()
            self.direct_care()
            self.research()
            self.audit()
            self.print_summary()
            if self.keep:
                print(f"\nThe broker is still running: {self.url}/register (public register),")
                print(f"{self.url}/dashboard (operator dashboard), {self.url}/openapi.json (API).")
                print("Press Ctrl-C to stop everything.", flush=True)
                try:
                    while self.broker is not None and self.broker.poll() is None:
                        time.sleep(0.5)
                except KeyboardInterrupt:
                    print()
        finally:
            self.stop_broker()
        return 0

    def print_summary(self) -> None:
        print("\n" + "=" * 78 + "\nTessera demo: summary\n" + "=" * 78)
        for title, seconds, note in self.summary.steps:
            print(f"{seconds:7.1f} s  {title}")
            if note:
                print(f"           {note}")
        for label, value in self.summary.facts:
            print(f"{label:<34} {value}")
        print(f"\nEverything the demo wrote is under {self.out}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _dump(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return Demo().run()
    except KeyboardInterrupt:
        print("\ndemo: interrupted; the broker and its redis-server were stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
