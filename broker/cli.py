"""``tessera-broker``: what the broker operator runs on the broker host.

``serve`` runs the HTTP API (with its own embedded redis-server unless
``TESSERA_BROKER_REDIS_URL`` is set); ``admin …`` manages identities, credentials and
wrapped key blobs by talking to the store directly, with the same settings as ``serve``.
Other modules add their commands to :data:`cli` or :data:`admin` (``report``, ``audit``,
``admin agreement``) and are registered at the bottom of this file with one line each.
"""

from __future__ import annotations

import base64
import re
import secrets as _random
from pathlib import Path

import click

from broker.audit import append_audit
from broker.cli_agreement import agreement_group
from broker.cli_audit import audit_group
from broker.cli_evaluate import evaluate_command
from broker.cli_report import report_command
from broker.errors import NotFoundOrForbiddenError
from broker.operator import data_dir_option, load_settings, operator_runtime
from broker.runtime import new_credential, utc_now
from broker.store.identities import (
    create_identity,
    find_identity,
    list_identities,
    replace_credential,
    revoke_identity,
)
from broker.store.keyblobs import check_blob, get_public_key, put_blob
from keys.cliutil import main_wrapper
from keys.wire import NAME_PATTERN, Role

__all__ = ["admin", "cli", "main"]

_NAME_HELP = "letters, digits, '.', '_' or '-' (at most 64), starting with a letter or digit"


def _check_name(name: str) -> str:
    if not re.fullmatch(NAME_PATTERN, name):
        raise click.BadParameter(f"{name!r}: {_NAME_HELP}")
    return name


@click.group(
    help="Tessera broker: the trusted third party's linkage service.\n\n"
    "Secrets come from the environment (TESSERA_BROKER_KEYSTORE_PASSPHRASE), never from "
    "the command line. Add --debug to any command for a traceback."
)
@click.version_option(package_name="tessera")
def cli() -> None:
    """Root command group."""


@cli.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (default 8470).")
@data_dir_option
def serve(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Serve the HTTP API (OpenAPI at /docs) until Ctrl-C or SIGTERM.

    Without TESSERA_BROKER_REDIS_URL the broker starts its own redis-server under the data
    directory and stops it on exit.
    """
    import uvicorn

    from broker.app import configure_json_logging, create_app

    settings = load_settings(host=host, port=port, data_dir=data_dir)
    configure_json_logging()
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        **settings.uvicorn_tls_options(),
    )


@cli.group()
def admin() -> None:
    """Identities, credentials and key blobs (run on the broker host)."""


def _add_identity(role: Role, name: str, data_dir: Path | None) -> None:
    _check_name(name)
    credential = new_credential()
    with operator_runtime(data_dir) as runtime:
        identity = create_identity(
            runtime.store,
            identity_id="id_" + _random.token_hex(8),
            name=name,
            role=role,
            digest=runtime.credential_digest(credential),
            now=utc_now(),
        )
        append_audit(
            runtime.store, identity="operator", role="operator", action=f"identity.add.{role}"
        )
    click.echo(f"created {role.value} {identity.name} ({identity.id})", err=True)
    click.echo("credential (shown once; give it to them over a secure channel):", err=True)
    click.echo(credential)


def _identity_group(role: Role, noun: str) -> click.Group:
    @click.group(name=noun, help=f"{noun.capitalize()} identities.")
    def group() -> None:
        pass

    @group.command(name="add", help=f"Create a {noun} identity and print its credential once.")
    @click.argument("name")
    @data_dir_option
    def add(name: str, data_dir: Path | None) -> None:
        _add_identity(role, name, data_dir)

    return group


org_group = _identity_group(Role.ORG, "org")
admin.add_command(org_group)
admin.add_command(_identity_group(Role.RESEARCHER, "researcher"))
admin.add_command(_identity_group(Role.AUDITOR, "auditor"))
admin.add_command(_identity_group(Role.ADMIN, "administrator"))


@org_group.command(name="public-key")
@click.argument("org")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the public key file here (for `tessera-keys`), else print its registration.",
)
@data_dir_option
def org_public_key(org: str, out: Path | None, data_dir: Path | None) -> None:
    """The organisation's registered public key, for the custodian to wrap domain keys to."""
    with operator_runtime(data_dir) as runtime:
        identity = find_identity(runtime.store, org)
        if identity.role is not Role.ORG:
            raise NotFoundOrForbiddenError(f"{org!r} is not an organisation")
        registration = get_public_key(runtime.store, org=org)
    if out is None:
        click.echo(registration.model_dump_json())
        return
    out.write_bytes(base64.b64decode(registration.public_key))
    click.echo(f"wrote {out} (fingerprint {registration.fingerprint or 'not given'})", err=True)


@admin.group(name="identity")
def identity_group() -> None:
    """List identities."""


@identity_group.command(name="list")
@data_dir_option
def identity_list(data_dir: Path | None) -> None:
    """Every identity: id, role, name, and whether revoked."""
    with operator_runtime(data_dir) as runtime:
        for identity in list_identities(runtime.store):
            state = "revoked" if identity.revoked else "active"
            click.echo(f"{identity.id}\t{identity.role.value}\t{identity.name}\t{state}")


@admin.group(name="credential")
def credential_group() -> None:
    """Revoke or reissue credentials."""


@credential_group.command(name="revoke")
@click.argument("name_or_id")
@data_dir_option
def credential_revoke(name_or_id: str, data_dir: Path | None) -> None:
    """Revoke an identity's credential: refused from the next request on."""
    with operator_runtime(data_dir) as runtime:
        identity = find_identity(runtime.store, name_or_id)
        revoke_identity(runtime.store, identity)
        append_audit(
            runtime.store, identity="operator", role="operator", action="credential.revoke"
        )
    click.echo(f"revoked the credential of {identity.role.value} {identity.name}", err=True)


@credential_group.command(name="issue")
@click.argument("name_or_id")
@data_dir_option
def credential_issue(name_or_id: str, data_dir: Path | None) -> None:
    """Give an identity a new credential (the old one stops working); printed once."""
    credential = new_credential()
    with operator_runtime(data_dir) as runtime:
        identity = find_identity(runtime.store, name_or_id)
        replace_credential(runtime.store, identity, runtime.credential_digest(credential))
        append_audit(runtime.store, identity="operator", role="operator", action="credential.issue")
    click.echo(f"new credential for {identity.role.value} {identity.name} (shown once):", err=True)
    click.echo(credential)


@admin.group(name="key-blob")
def key_blob_group() -> None:
    """Wrapped domain-key blobs from the key custodian."""


@key_blob_group.command(name="add")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--org", "org", default=None, help="Check that each blob is for this organisation.")
@data_dir_option
def key_blob_add(files: tuple[Path, ...], org: str | None, data_dir: Path | None) -> None:
    """Hold wrapped blobs (as `tessera-keys` wrote them) for their organisation to fetch.

    The organisation, domain and key version are read from each blob's clear header. The
    broker cannot open a blob: it is wrapped to the organisation's own key.
    """
    with operator_runtime(data_dir) as runtime:
        for file in files:
            blob = file.read_bytes()
            header = check_blob(blob, source=str(file), org=org)
            identity = find_identity(runtime.store, header.org)
            if identity.role is not Role.ORG:
                raise NotFoundOrForbiddenError(f"{header.org!r} is not an organisation")
            put_blob(
                runtime.store,
                org=header.org,
                domain=header.domain,
                key_version=header.version,
                blob=blob,
            )
            append_audit(runtime.store, identity="operator", role="operator", action="keyblob.add")
            click.echo(
                f"holding the {header.domain} {header.version} blob for {header.org}", err=True
            )


cli.add_command(report_command)
cli.add_command(evaluate_command)
cli.add_command(audit_group)
admin.add_command(agreement_group)

main = main_wrapper(cli, "tessera-broker")
