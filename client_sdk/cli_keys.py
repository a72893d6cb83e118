"""``tessera-sdk init``, ``install-key`` and ``keys``: an organisation's identity and keys.

Thin over :class:`client_sdk.orgstore.OrgStore`. The passphrase of the organisation's
keystore comes from ``TESSERA_SDK_PASSPHRASE`` or a hidden prompt.
"""

from __future__ import annotations

from pathlib import Path

import click

from client_sdk.config import org_passphrase
from client_sdk.orgstore import OrgStore
from keys.keystore import check_new_passphrase

__all__ = ["KEY_COMMANDS", "init", "install_key", "keys_command", "register_key_commands"]


_dir_option = click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The organisation directory (made by `tessera-sdk init`).",
)


@click.command()
@click.option("--org", required=True, help="Your organisation's name, as the custodian knows it.")
@_dir_option
def init(org: str, directory: Path) -> None:
    """Make the organisation's identity: key pairs, an encrypted keystore, a public key file."""
    store = OrgStore.create(directory, org, check_new_passphrase(org_passphrase(confirm=True)))
    click.echo(f"initialised organisation {store.org} in {store.directory}")
    click.echo(f"public key file for the custodian: {store.public_key_path}")
    click.echo(f"fingerprint (read it out to the custodian): {store.fingerprint}")


@click.command("install-key")
@click.argument("blob", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_dir_option
def install_key(blob: Path, directory: Path) -> None:
    """Unwrap a key granted by the custodian (the BLOB file) into the local keystore."""
    store = OrgStore.open(directory, org_passphrase())
    installed = store.install_blob(blob.read_bytes(), source=str(blob))
    click.echo(
        f"installed domain {installed.domain} {installed.version} "
        f"(key id {installed.key_id}, fingerprint {installed.fingerprint}) for {store.org}"
    )


@click.command("keys")
@_dir_option
def keys_command(directory: Path) -> None:
    """List installed domain keys: domain, version, key id, fingerprint; never key bytes."""
    store = OrgStore.open(directory, org_passphrase())
    installed = store.installed()
    click.echo(f"organisation {store.org}, public key fingerprint {store.fingerprint}")
    if not installed:
        click.echo("no domain keys installed yet: run `tessera-sdk install-key FILE`")
        return
    click.echo(f"{'DOMAIN':<24} {'VERSION':<8} {'KEY ID':<21} {'FINGERPRINT':<15} INSTALLED")
    for key in installed:
        click.echo(
            f"{key.domain:<24} {key.version:<8} {key.key_id:<21} {key.fingerprint:<15} "
            f"{key.installed_at}"
        )


KEY_COMMANDS: tuple[click.Command, ...] = (init, install_key, keys_command)


def register_key_commands(group: click.Group) -> None:
    """Add ``init``, ``install-key`` and ``keys`` to the ``tessera-sdk`` group."""
    for command in KEY_COMMANDS:
        group.add_command(command)
