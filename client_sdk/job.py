"""The job file of ``tessera-sdk run``: one extract's nightly check, tokenise and upload.

A practice or trust schedules one command (cron, a systemd timer, Windows Task
Scheduler) instead of typing four. The job file names everything the four commands
would be given on their command lines; secrets still come only from the environment
(``TESSERA_SDK_PASSPHRASE``, ``TESSERA_SDK_TOKEN``). Relative paths are read from the
job file's own directory, so a job works whatever directory the scheduler starts it in.
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from client_sdk.errors import JobConfigError
from client_sdk.quality import GRADE_THRESHOLDS, Grade

__all__ = [
    "GRADE_ORDER",
    "DirectCareStep",
    "ExtractStep",
    "Job",
    "TokeniseStep",
    "UploadStep",
    "grade_meets",
    "load_job",
]

GRADE_ORDER: tuple[Grade, ...] = (*GRADE_THRESHOLDS, "Not rated")
"""Grades best first; a floor of ``Not rated`` lets every extract through."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExtractStep(_Section):
    """``[extract]``: the file to read and how to read it.

    ``permitted`` is the file the Check for National Data Opt-outs service returned (as
    ``tessera-sdk tokenise --permitted``), ``opt_out_checked`` the day of that check when
    the file does not say it.
    """

    input: Path
    mapping: Path
    spec: Path | None = None
    permitted: Path | None = None
    opt_out_checked: date | None = None


class TokeniseStep(_Section):
    """``[tokenise]``: the domain and dataset the batch is made for."""

    domain: str = Field(min_length=1)
    dataset: str = Field(min_length=1)
    key_version: str | None = None
    workers: int | None = Field(default=None, ge=1, le=256)
    """Processes to tokenise in; unset, the CPUs available to the process (as tokenise)."""


class UploadStep(_Section):
    """``[upload]``: how the batch goes to the broker, and the quality gate before it."""

    mode: Literal["append", "replace"] = "replace"
    min_grade: Grade = "Bronze"
    broker_url: str | None = None


class DirectCareStep(_Section):
    """``[direct_care]``: optionally fetch the linked facts, and the risk list from them."""

    agreement: str = Field(min_length=1)
    out: Path
    risk_rules: Path | None = None
    risk_out: Path | None = None


class Job(_Section):
    """A whole job file."""

    org_dir: Path
    work_dir: Path | None = None
    log: Path | None = None
    extract: ExtractStep
    tokenise: TokeniseStep
    upload: UploadStep = UploadStep()
    direct_care: DirectCareStep | None = None

    @property
    def runs_dir(self) -> Path:
        """Where batches are written (``work_dir``, else ``runs`` in the org directory)."""
        return self.work_dir if self.work_dir is not None else self.org_dir / "runs"

    @property
    def log_path(self) -> Path:
        """The job's log file: steps, counts and the grade, never a value."""
        return self.log if self.log is not None else self.runs_dir / "run.log"

    @property
    def lock_path(self) -> Path:
        """The lock that keeps two runs of this job from overlapping."""
        return self.runs_dir / "run.lock"


_PATH_FIELDS = {
    (): ("org_dir", "work_dir", "log"),
    ("extract",): ("input", "mapping", "spec", "permitted"),
    ("direct_care",): ("out", "risk_rules", "risk_out"),
}


def _anchor(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Resolve the relative paths of a raw job table against ``base``."""
    out = dict(raw)
    for section, names in _PATH_FIELDS.items():
        table = out
        if section:
            found = out.get(section[0])
            if not isinstance(found, dict):
                continue
            table = out[section[0]] = dict(found)
        for name in names:
            value = table.get(name)
            if (
                name == "spec"
                and isinstance(value, str)
                and value == Path(value).stem
                and not (base / value).exists()
            ):
                continue  # a shipped spec's name (keys.spec.resolve_spec), not a file here
            if isinstance(value, str) and value:
                table[name] = str(base / Path(value).expanduser())
    return out


def load_job(path: Path) -> Job:
    """Read and validate a job file.

    Raises:
        JobConfigError: the file is missing, is not TOML, or has invalid or unknown
            fields (every problem in one message, located by table and field).
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise JobConfigError(f"{path}: cannot read the job file ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise JobConfigError(f"{path}: not a TOML file ({exc})") from None
    job_table = raw.pop("job", {})
    if not isinstance(job_table, dict):
        raise JobConfigError(f"{path}: [job] must be a table")
    merged = {**job_table, **raw}
    try:
        return Job.model_validate(_anchor(merged, path.resolve().parent))
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc']) or 'job'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise JobConfigError(f"{path}: invalid job file: " + "; ".join(problems)) from None


def grade_meets(grade: str, floor: Grade) -> bool:
    """Whether ``grade`` is ``floor`` or better (an unknown grade meets no floor but the last)."""
    rank: dict[str, int] = {g: i for i, g in enumerate(GRADE_ORDER)}
    return rank.get(grade, len(GRADE_ORDER) - 1) <= rank[floor]
