"""``tessera-broker``: what the broker operator runs on the broker host.

``serve`` runs the HTTP API (with its own embedded redis-server unless
``TESSERA_BROKER_REDIS_URL`` is set) and ``link-worker`` links without serving (both in
serve.py); ``admin …`` manages identities, credentials and wrapped key blobs by talking
to the store directly, with the same settings as ``serve``.
The other modules of this package define their commands (``report``, ``audit``,
``evaluate``, ``admin agreement``, ``admin opt-out-register``); :data:`COMMANDS` at the
bottom of this file is the one table that places each in its group.
"""

from __future__ import annotations

import base64
import re
import secrets as _random
from pathlib import Path

import click

from broker.audit import append_audit
from broker.cli.agreement import agreement_group
from broker.cli.audit import audit_group
from broker.cli.evaluate import evaluate_command
from broker.cli.operator import data_dir_option, load_settings, operator_runtime
from broker.cli.opt_out import opt_out_group
from broker.cli.report import report_command
from broker.cli.serve import link_worker_command, open_keystore, serve_command
from broker.errors import NotFoundOrForbiddenError
from broker.runtime import new_credential, utc_now
from broker.store.identities import (
    create_identity,
    find_identity,
    list_identities,
    replace_credential,
    revoke_identity,
    set_identity_labels,
)
from broker.store.keyblobs import check_blob, get_public_key, put_blob
from keys.cliutil import main_wrapper
from keys.wire import NAME_PATTERN, Role

__all__ = ["COMMANDS", "admin", "cli", "main"]

_NAME_HELP = "letters, digits, '.', '_' or '-' (at most 64), starting with a letter or digit"
_ODS_PATTERN = r"[A-Z0-9]{3,10}"
"""An NHS ODS organisation code (e.g. L85540 for a practice, RBA for a trust)."""


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
@data_dir_option
def init(data_dir: Path | None) -> None:
    """Create the broker's data directory and keystore without serving.

    The other operator commands (admin, report, audit, evaluate) need the data that
    `serve` or `init` created; they never create it.
    """
    settings = load_settings(data_dir=data_dir)
    existed = settings.resolved_keystore_path.is_file()
    open_keystore(settings)
    state = "already holds broker data" if existed else "initialised"
    click.echo(f"{settings.data_dir.absolute()}: {state}", err=True)


@cli.group()
def admin() -> None:
    """Identities, credentials and key blobs (run on the broker host)."""


def _check_ods(code: str) -> str:
    upper = code.strip().upper()
    if not re.fullmatch(_ODS_PATTERN, upper):
        raise click.BadParameter(f"{code!r}: an ODS code is 3 to 10 letters or digits")
    return upper


def _add_identity(
    role: Role, name: str, data_dir: Path | None, *, display_name: str = "", ods_code: str = ""
) -> None:
    _check_name(name)
    if len(display_name) > 200:
        raise click.BadParameter("--name: at most 200 characters")
    credential = new_credential()
    with operator_runtime(data_dir) as runtime:
        identity = create_identity(
            runtime.store,
            identity_id="id_" + _random.token_hex(8),
            name=name,
            role=role,
            digest=runtime.credential_digest(credential),
            now=utc_now(),
            display_name=display_name.strip(),
            ods_code=_check_ods(ods_code) if ods_code else "",
        )
        append_audit(
            runtime.store, identity="operator", role="operator", action=f"identity.add.{role}"
        )
    click.echo(f"created {role.value} {identity.label} ({identity.name}, {identity.id})", err=True)
    click.echo("credential (shown once; give it to them over a secure channel):", err=True)
    click.echo(credential)


def _identity_group(role: Role, noun: str) -> click.Group:
    @click.group(name=noun, help=f"{noun.capitalize()} identities.")
    def group() -> None:
        pass

    @group.command(name="add", help=f"Create a {noun} identity and print its credential once.")
    @click.argument("name")
    @click.option(
        "--name",
        "display_name",
        default="",
        help="Name for people on the register and dashboard, e.g. 'Riverside Surgery'.",
    )
    @data_dir_option
    def add(name: str, display_name: str, data_dir: Path | None, ods_code: str = "") -> None:
        _add_identity(role, name, data_dir, display_name=display_name, ods_code=ods_code)

    if role is Role.ORG:
        click.option("--ods", "ods_code", default="", help="NHS ODS code, e.g. L85540.")(add)
    return group


org_group = _identity_group(Role.ORG, "org")
admin.add_command(org_group)
admin.add_command(_identity_group(Role.RESEARCHER, "researcher"))
admin.add_command(_identity_group(Role.AUDITOR, "auditor"))
admin.add_command(_identity_group(Role.ADMIN, "administrator"))


@org_group.command(name="describe")
@click.argument("org")
@click.option("--name", "display_name", default="", help="Name for people, e.g. 'Riverside'.")
@click.option("--ods", "ods_code", default="", help="NHS ODS code, e.g. L85540.")
@data_dir_option
def org_describe(org: str, display_name: str, ods_code: str, data_dir: Path | None) -> None:
    """Set the display name and ODS code the register and dashboard show for ORG."""
    if len(display_name) > 200:
        raise click.BadParameter("--name: at most 200 characters")
    code = _check_ods(ods_code) if ods_code else ""
    with operator_runtime(data_dir) as runtime:
        identity = find_identity(runtime.store, org)
        if identity.role is not Role.ORG:
            raise NotFoundOrForbiddenError(f"{org!r} is not an organisation")
        described = set_identity_labels(
            runtime.store, identity, display_name=display_name.strip(), ods_code=code
        )
    click.echo(f"{described.name} is shown as {described.label}", err=True)


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
    """Every identity: id, role, name, whether revoked, and how the pages show it."""
    with operator_runtime(data_dir) as runtime:
        for identity in list_identities(runtime.store):
            state = "revoked" if identity.revoked else "active"
            click.echo(
                f"{identity.id}\t{identity.role.value}\t{identity.name}\t{state}\t{identity.label}"
            )


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


COMMANDS: tuple[tuple[click.Group, click.Command], ...] = (
    (cli, serve_command),
    (cli, link_worker_command),
    (cli, report_command),
    (cli, evaluate_command),
    (cli, audit_group),
    (admin, agreement_group),
    (admin, opt_out_group),
)
"""The command table: each command another ``cli`` module defines, and the group it joins."""

for _group, _command in COMMANDS:
    _group.add_command(_command)

main = main_wrapper(cli, "tessera-broker")
