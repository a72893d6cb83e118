"""``tessera-broker audit …``: verify, export and checkpoint the audit log, show its key.

``verify`` exits with code 28 and names the first bad position when the chain or any
checkpoint fails; it can also check an export offline against a published public key,
and check either against *anchors*: checkpoints kept outside the broker, which find a
rollback of the whole log that the broker's Redis alone cannot show (docs/audit.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from pathlib import Path

import click

from broker.audit import (
    Checkpoint,
    audit_key_id,
    checkpoint_now,
    export_lines,
    verify_audit,
    verify_export,
)
from broker.cli.operator import operator_runtime
from broker.errors import AuditTamperedError, ConfigurationError
from keys.signing import PUBLIC_KEY_BYTES, public_key_of

__all__ = ["audit_group"]

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Broker data directory (default TESSERA_BROKER_DATA_DIR or ./var/tessera).",
)


def _read_public_key(path: Path) -> bytes:
    """A public key file as ``audit public-key`` writes it (base64 on its first line)."""
    text = path.read_text(encoding="ascii", errors="replace").strip().splitlines()
    try:
        key = base64.b64decode(text[0].strip(), validate=True) if text else b""
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != PUBLIC_KEY_BYTES:
        raise ConfigurationError(f"{path}: not an audit public key (base64 of 32 bytes)")
    return key


def _checkpoints_in(value: object) -> list[Checkpoint]:
    if isinstance(value, list):
        return [found for item in value for found in _checkpoints_in(item)]
    if isinstance(value, dict) and set(value) == {"checkpoint"}:
        return _checkpoints_in(value["checkpoint"])
    if isinstance(value, dict) and "signature" in value:
        try:
            return [Checkpoint.from_json(json.dumps(value))]
        except ValueError:
            return []
    return []  # an entry line of an export, or anything else


def _read_anchors(path: Path) -> list[bytes]:
    """The checkpoints in an anchor file: an export (its checkpoint lines), checkpoints one
    per line (`audit checkpoint --out`), or the JSON list `GET /v1/audit/checkpoints` gives."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        values: list[object] = [json.loads(text)]
    except ValueError:
        values = []
        for line in text.splitlines():
            try:
                values.append(json.loads(line))
            except ValueError:
                continue
    found = [checkpoint.to_json() for value in values for checkpoint in _checkpoints_in(value)]
    if not found:
        raise ConfigurationError(f"{path}: no audit checkpoint in it")
    return found


@click.group(name="audit")
def audit_group() -> None:
    """The tamper-evident audit log: verify, export, checkpoint, public key."""


@audit_group.command(name="verify")
@click.option(
    "--file",
    "export_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Verify this export (from `audit export`) instead of the broker's log.",
)
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The audit public key file (from `audit public-key --out`); needed with --file.",
)
@click.option(
    "--anchor",
    "anchor_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Checkpoints kept outside the broker (an earlier export, or `audit checkpoint "
    "--out`) that the log must still match; repeatable.",
)
@_data_dir
def verify_command(
    export_file: Path | None,
    public_key: Path | None,
    anchor_files: tuple[Path, ...],
    data_dir: Path | None,
) -> None:
    """Check the whole hash chain and every signed checkpoint.

    Prints a summary; exits 0 when everything verifies, else 28 naming the first bad
    position (and lists every problem found on stderr).
    """
    anchors = [raw for path in anchor_files for raw in _read_anchors(path)]
    if export_file is not None:
        if public_key is None:
            raise click.UsageError("--file needs --public-key")
        with export_file.open("rb") as lines:
            result = verify_export(lines, _read_public_key(public_key), anchors=anchors)
    else:
        with operator_runtime(data_dir) as runtime:
            key = (
                _read_public_key(public_key)
                if public_key is not None
                else public_key_of(runtime.secrets.audit_signing_key)
            )
            result = verify_audit(runtime.store, key, anchors=anchors)
    if result.ok:
        click.echo(result.summary())
        return
    for problem in result.problems[1:]:
        click.echo(f"also at position {problem.position}: {problem.message}", err=True)
    first = result.problems[0]
    raise AuditTamperedError(first.position, first.message)


@audit_group.command(name="export")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file (default: standard output).",
)
@_data_dir
def export_command(out: Path | None, data_dir: Path | None) -> None:
    """Write the audit log as JSON lines: every entry as stored, then every checkpoint.

    Hand it to an auditor with the public key; `audit verify --file` checks it offline.
    """
    with operator_runtime(data_dir) as runtime:
        if out is None:
            sink = sys.stdout.buffer
            for line in export_lines(runtime.store):
                sink.write(line + b"\n")
            sink.flush()
            return
        written = 0
        tmp = out.with_name(out.name + ".partial")
        with tmp.open("wb") as fh:
            for line in export_lines(runtime.store):
                fh.write(line + b"\n")
                written += 1
        tmp.replace(out)
    click.echo(f"wrote {written} lines to {out}", err=True)


@audit_group.command(name="checkpoint")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the checkpoint here, to keep outside the broker (`verify --anchor`).",
)
@_data_dir
def checkpoint_command(out: Path | None, data_dir: Path | None) -> None:
    """Sign a checkpoint of the newest entry now (after verifying what it covers)."""
    with operator_runtime(data_dir) as runtime:
        made = checkpoint_now(
            runtime.store,
            runtime.secrets.audit_signing_key,
            every=runtime.settings.audit_checkpoint_every,
        )
    if made is None:
        click.echo("the audit log is empty: nothing to checkpoint")
        return
    if out is not None:
        out.write_bytes(made.to_json() + b"\n")
        click.echo(f"wrote {out}", err=True)
    click.echo(f"checkpoint at position {made.position} ({made.time}, key {made.key_id})")


@audit_group.command(name="public-key")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the key file here (for `audit verify --public-key`).",
)
@_data_dir
def public_key_command(out: Path | None, data_dir: Path | None) -> None:
    """Print the audit public key (base64) and its id, to publish or give to auditors."""
    with operator_runtime(data_dir) as runtime:
        key = public_key_of(runtime.secrets.audit_signing_key)
    text = base64.b64encode(key).decode()
    if out is not None:
        out.write_text(f"{text}\n{audit_key_id(key)}\n", encoding="ascii")
        click.echo(f"wrote {out}", err=True)
    click.echo(text)
    click.echo(audit_key_id(key))
