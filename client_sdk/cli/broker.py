"""``tessera-sdk upload``, ``dataset``, ``register-key``, ``fetch-key``, ``whoami``.

The credential comes from ``TESSERA_SDK_TOKEN`` and the broker URL from ``--broker`` or
``TESSERA_SDK_BROKER_URL``; the organisation directory's passphrase (for ``fetch-key``)
from ``TESSERA_SDK_PASSPHRASE`` or a prompt.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from client_sdk.client import BrokerClient, UploadProgress
from client_sdk.config import broker_target, org_passphrase, transport_options
from client_sdk.errors import BrokerCallError, InputError
from client_sdk.orgstore import PUBLIC_KEY_FILE, OrgStore, public_key_fingerprint
from keys.batch import BatchReader
from keys.wire import (
    BatchMode,
    BatchState,
    DatasetDeclaration,
    DatasetKind,
    PublicKeyRegistration,
    ReplacePreview,
)

__all__ = [
    "INSECURE_HTTP_META",
    "broker_option",
    "cli_transport_options",
    "dataset_group",
    "fetch_key_command",
    "insecure_http_option",
    "register_key_command",
    "upload_command",
    "whoami_command",
]

PUBLIC_KEY_ALGORITHM = "tessera-org-public-key-v1"

_Command = TypeVar("_Command", bound=Callable[..., Any])

INSECURE_HTTP_META = "tessera.insecure_http"
"""Where ``--insecure-http`` leaves its value in the click context's ``meta``."""


def _remember_insecure_http(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[INSECURE_HTTP_META] = True
    return value


insecure_http_option = click.option(
    "--insecure-http",
    is_flag=True,
    expose_value=False,
    callback=_remember_insecure_http,
    help="Allow plain http:// to a remote broker (sends the credential in clear).",
)
"""Add ``--insecure-http`` to a command that talks to the broker."""


def cli_transport_options() -> dict[str, Any]:
    """:func:`client_sdk.config.transport_options` with this command line's ``--insecure-http``."""
    ctx = click.get_current_context(silent=True)
    flag = bool(ctx is not None and ctx.meta.get(INSECURE_HTTP_META))
    return transport_options(insecure_http=flag)


_broker_url_option = click.option(
    "--broker",
    "broker_url",
    default=None,
    metavar="URL",
    help="Broker URL (default TESSERA_SDK_BROKER_URL).",
)


def broker_option(command: _Command) -> _Command:
    """``--broker URL`` and ``--insecure-http`` for a command that talks to the broker."""
    return _broker_url_option(insecure_http_option(command))


def _client(broker_url: str | None) -> BrokerClient:
    return BrokerClient(*broker_target(broker_url), **cli_transport_options())


@contextmanager
def _progress_display(enabled: bool) -> Iterator[Callable[[UploadProgress], None] | None]:
    """A rich progress bar on a terminal (stderr), or nothing."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[records]}"),
        console=Console(stderr=True),
        transient=False,
    ) as progress:
        tasks: dict[str, object] = {}

        def show(event: UploadProgress) -> None:
            label = "uploading chunks" if event.phase == "upload" else "linking chunks"
            if event.phase not in tasks:
                tasks[event.phase] = progress.add_task(label, total=event.total, records="")
            task = tasks[event.phase]
            records = f"{event.records:,} records" if event.phase == "upload" else ""
            progress.update(task, completed=event.done, records=records)  # type: ignore[arg-type]

        yield show


@click.command("upload")
@click.argument("batch", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@broker_option
@click.option("--dataset", default=None, help="Dataset name (default: the batch's).")
@click.option(
    "--mode",
    type=click.Choice([m.value for m in BatchMode]),
    default=BatchMode.APPEND.value,
    show_default=True,
    help="append records, replace the dataset with this full snapshot, retract references, "
    "or rekey: the dataset's records again under the domain's new key version (a key "
    "rotation; docs/key-ceremony.md).",
)
@click.option(
    "--confirm-replace",
    is_flag=True,
    help="Let a replace remove more than 10% of the records held (the broker refuses it "
    "otherwise).",
)
@click.option("--wait/--no-wait", default=True, help="Wait until the broker has linked it.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on a terminal.")
def upload_command(
    batch: Path,
    broker_url: str | None,
    dataset: str | None,
    mode: str,
    confirm_replace: bool,
    wait: bool,
    progress: bool,
) -> None:
    """Upload a token BATCH (from `tessera-sdk tokenise`) to the broker.

    Run it again after an interruption, with the same --mode: chunks the broker already
    holds are not sent again, and a batch is visible to linkage only once it is complete.
    A replace first prints what it will remove; above 10% of the records held it needs
    --confirm-replace. After a key rotation, --mode rekey sends the same extract tokenised
    under the new version: the broker keeps releasing from the old version until every
    dataset of the domain has moved, then switches, keeping every person.
    """
    reader = BatchReader(batch)
    with _client(broker_url) as client, _progress_display(progress) as show:
        status = client.upload(
            reader,
            dataset=dataset,
            mode=BatchMode(mode),
            wait=wait,
            on_progress=show,
            confirm_replace=confirm_replace,
            on_replace_preview=_show_replace_preview,
        )
    if status.state is BatchState.FAILED:
        raise BrokerCallError(f"the broker could not link the batch: {status.error}", code="failed")
    click.echo(
        f"batch {status.batch_id}: {status.record_count} records, {status.chunk_count} chunks, "
        f"{status.state.value}"
    )
    if BatchMode(mode) is BatchMode.REKEY and status.state is BatchState.LINKED:
        click.echo(
            "rekey: the broker holds these tokens aside and releases from the old key "
            "version until every dataset of the domain has moved, then switches",
            err=True,
        )


def _show_replace_preview(preview: ReplacePreview) -> None:
    click.echo(
        f"replace: {preview.held:,} records held now, {preview.incoming:,} in this batch, "
        f"{preview.removed:,} removed ({preview.removed_share:.0%})",
        err=True,
    )


@click.group("dataset")
def dataset_group() -> None:
    """Declare and list this organisation's datasets on the broker."""


@dataset_group.command("declare")
@click.argument("name")
@broker_option
@click.option(
    "--from-batch",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Take domain, key version, spec hash, match keys and payload columns from a batch.",
)
@click.option("--domain", default=None, help="Linkage domain.")
@click.option("--key-version", default=None, help="Domain key version, e.g. v1.")
@click.option("--spec-hash", default=None, help="Content hash of the linkage spec.")
@click.option("--match-key", "match_keys", multiple=True, help="Match key name (repeat, in order).")
@click.option("--payload-column", "payload_columns", multiple=True, help="Payload column (repeat).")
@click.option(
    "--one-record-per-person/--many-records-per-person",
    required=True,
    help="Whether the dataset holds at most one record per person.",
)
@click.option("--description", default="", help="What the dataset is, for people.")
def declare_command(
    name: str,
    broker_url: str | None,
    from_batch: Path | None,
    domain: str | None,
    key_version: str | None,
    spec_hash: str | None,
    match_keys: tuple[str, ...],
    payload_columns: tuple[str, ...],
    one_record_per_person: bool,
    description: str,
) -> None:
    """Declare dataset NAME (declaring the same again is harmless).

    An opt-out register is declared like any tokens-only dataset; only the broker's
    operator can then designate it as one (docs/agreements.md, "Opt-outs").
    """
    fields: dict[str, object] = {}
    batch_org: str | None = None
    if from_batch is not None:
        manifest = BatchReader(from_batch).manifest
        if manifest.dataset != name:
            raise InputError(
                f"{from_batch}: the batch was made for dataset {manifest.dataset!r}, not "
                f"{name!r}; declare {manifest.dataset!r} or tokenise with --dataset {name}"
            )
        batch_org = manifest.org
        fields = {
            "domain": manifest.domain,
            "key_version": manifest.key_version,
            "spec_hash": manifest.spec_hash,
            "match_keys": manifest.match_keys,
            "payload_columns": manifest.payload_columns,
        }
    given = {
        "domain": domain,
        "key_version": key_version,
        "spec_hash": spec_hash,
        "match_keys": list(match_keys) or None,
        "payload_columns": list(payload_columns) or None,
    }
    fields.update({k: v for k, v in given.items() if v is not None})
    missing = [k for k in ("domain", "key_version", "spec_hash", "match_keys") if k not in fields]
    if missing:
        raise click.UsageError(
            "give --from-batch or " + ", ".join("--" + m.replace("_", "-") for m in missing)
        )
    declaration = DatasetDeclaration.model_validate(
        {
            **fields,
            "name": name,
            "description": description,
            "one_record_per_person": one_record_per_person,
            "kind": DatasetKind.RECORDS,
        }
    )
    with _client(broker_url) as client:
        if batch_org is not None:
            caller = client.whoami().name
            if caller != batch_org:
                raise InputError(
                    f"{from_batch}: the batch was made by organisation {batch_org!r}, but "
                    f"TESSERA_SDK_TOKEN is the credential of {caller!r}"
                )
        info = client.declare_dataset(declaration)
    click.echo(
        f"dataset {info.name}: domain {info.domain} {info.key_version}, spec {info.spec_hash}"
    )


@dataset_group.command("list")
@broker_option
def list_command(broker_url: str | None) -> None:
    """This organisation's datasets."""
    with _client(broker_url) as client:
        for info in client.datasets():
            per_person = "one per person" if info.one_record_per_person else "many per person"
            click.echo(
                f"{info.name}\t{info.domain}\t{info.key_version}\t{per_person}\t"
                f"{info.batches} batches"
            )


@click.command("register-key")
@click.option(
    "--dir",
    "org_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The organisation directory (from `tessera-sdk init`).",
)
@broker_option
def register_key_command(org_dir: Path, broker_url: str | None) -> None:
    """Register the organisation's identity public key with the broker.

    Read out the printed fingerprint to the key custodian, who checks it before wrapping.
    """
    data = (org_dir / PUBLIC_KEY_FILE).read_bytes()
    fingerprint = public_key_fingerprint(data)
    registration = PublicKeyRegistration(
        algorithm=PUBLIC_KEY_ALGORITHM,
        public_key=base64.b64encode(data).decode(),
        fingerprint=fingerprint,
    )
    with _client(broker_url) as client:
        client.register_public_key(registration)
    click.echo(f"registered public key, fingerprint {fingerprint}")


@click.command("fetch-key")
@click.option(
    "--dir",
    "org_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The organisation directory (from `tessera-sdk init`).",
)
@click.option("--domain", default=None, help="Only this linkage domain.")
@broker_option
def fetch_key_command(org_dir: Path, domain: str | None, broker_url: str | None) -> None:
    """Download the domain keys wrapped for this organisation and install them locally.

    The broker relays the wrapped blobs; only this organisation's private key opens them.
    """
    passphrase = org_passphrase()
    store = OrgStore.open(org_dir, passphrase)
    installed = 0
    with _client(broker_url) as client:
        for info in client.key_blobs():
            if domain is not None and info.domain != domain:
                continue
            blob = client.key_blob(info.domain, info.key_version)
            key = store.install_blob(blob, source=f"blob {info.domain} {info.key_version}")
            click.echo(f"installed {key.domain} {key.version} (fingerprint {key.fingerprint})")
            installed += 1
    if installed == 0:
        raise BrokerCallError("the broker holds no key blob for this organisation", code="none")


@click.command("whoami")
@broker_option
def whoami_command(broker_url: str | None) -> None:
    """Show whom the credential in TESSERA_SDK_TOKEN belongs to."""
    with _client(broker_url) as client:
        identity = client.whoami()
    click.echo(f"{identity.role.value} {identity.name}")
