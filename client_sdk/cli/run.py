"""``tessera-sdk run --config job.toml``: the whole nightly job for one extract.

Tokenise (which checks and grades the extract as it reads it), refuse to upload when the
grade is below the job's floor, upload, and optionally fetch the direct-care return and
score the risk list. Each step is the same command a person would type, with the job
file's settings; the log file gets one line per step with counts and the grade only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from filelock import FileLock, Timeout

from client_sdk.cli.broker import upload_command
from client_sdk.cli.release import linked_command, risk_command
from client_sdk.cli.tokenise import tokenise_command
from client_sdk.errors import JobBusyError, QualityFloorError
from client_sdk.job import Job, grade_meets, load_job
from keys.batch import BatchReader
from keys.errors import TesseraError

__all__ = ["run_command"]

_LOG = logging.getLogger("tessera.job")
BATCH_SUFFIX = ".tsb"


@contextmanager
def _job_log(path: Path) -> Iterator[logging.Logger]:
    """Append this run's lines to the job's log file (and nowhere else)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    _LOG.addHandler(handler)
    _LOG.setLevel(logging.INFO)
    _LOG.propagate = False
    try:
        yield _LOG
    finally:
        _LOG.removeHandler(handler)
        handler.close()


@contextmanager
def _exclusive(job: Job) -> Iterator[None]:
    lock = FileLock(job.lock_path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise JobBusyError(
            f"{job.lock_path}: another run of this job is still going; not started"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _step(ctx: click.Context, log: logging.Logger, name: str, command: click.Command,
          **params: Any) -> None:  # fmt: skip
    log.info("%s: started", name)
    try:
        ctx.invoke(command, **params)
    except TesseraError as exc:
        log.error("%s: failed (exit %d): %s", name, exc.exit_code, exc)
        raise
    log.info("%s: done", name)


def _drop_older_batches(runs: Path, keep: Path) -> None:
    """Batches carry payload: once one is uploaded, earlier runs' copies go."""
    for old in runs.glob(f"*{BATCH_SUFFIX}"):
        if old != keep:
            old.unlink(missing_ok=True)


@click.command("run")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The job file (TOML; docs/scheduling.md).",
)
@click.pass_context
def run_command(ctx: click.Context, config_path: Path) -> None:
    """Run one scheduled job: tokenise, gate on the quality grade, upload, fetch.

    Two runs of one job never overlap (the second exits 17). An extract graded below the
    job's `min_grade` is not uploaded (exit 18); a job file that does not validate exits
    16. Any other failure exits with the code of the step that failed, as that command
    would. Secrets come from TESSERA_SDK_PASSPHRASE and TESSERA_SDK_TOKEN, never from the
    job file.
    """
    job = load_job(config_path)
    job.runs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _exclusive(job), _job_log(job.log_path) as log:
        log.info("run of %s started (pid %d)", config_path, os.getpid())
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        batch = job.runs_dir / f"{job.tokenise.dataset}-{stamp}{BATCH_SUFFIX}"
        workers = {} if job.tokenise.workers is None else {"workers": job.tokenise.workers}
        opt_outs = {"permitted_path": job.extract.permitted,
                    "opt_out_checked": job.extract.opt_out_checked}  # fmt: skip
        _step(
            ctx, log, "tokenise", tokenise_command,
            input_path=job.extract.input, mapping_path=job.extract.mapping,
            spec_path=job.extract.spec, orgdir=job.org_dir, domain=job.tokenise.domain,
            key_version=job.tokenise.key_version, dataset=job.tokenise.dataset, out=batch,
            progress=False, **workers, **opt_outs,
        )  # fmt: skip
        manifest = BatchReader(batch).manifest
        grade = str(manifest.quality.get("grade", "Not rated"))
        rejected = manifest.quality.get("rows_rejected", 0)
        log.info("batch: %d records, %s rows rejected, grade %s", manifest.record_count,
                 rejected, grade)  # fmt: skip
        if not grade_meets(grade, job.upload.min_grade):
            error = QualityFloorError(
                f"the extract is graded {grade}, below the job's floor {job.upload.min_grade}: "
                f"not uploaded (the batch stays at {batch})"
            )
            log.error("upload: refused (exit %d): %s", error.exit_code, error)
            raise error
        _step(
            ctx, log, "upload", upload_command,
            batch=batch, broker_url=job.upload.broker_url, dataset=None,
            mode=job.upload.mode, wait=True, progress=False,
        )  # fmt: skip
        _drop_older_batches(job.runs_dir, batch)
        care = job.direct_care
        if care is not None:
            _step(
                ctx, log, "linked", linked_command, agreement_id=care.agreement,
                orgdir=job.org_dir, out=care.out, broker_url=job.upload.broker_url,
            )  # fmt: skip
            if care.risk_rules is not None and care.risk_out is not None:
                _step(
                    ctx, log, "risk", risk_command, linked_path=care.out,
                    rules_path=care.risk_rules, out=care.risk_out, top=None,
                )  # fmt: skip
        log.info("run finished")
