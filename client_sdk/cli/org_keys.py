"""``tessera-sdk init``, ``install-key`` and ``keys``: an organisation's identity and keys.

Thin over :class:`client_sdk.orgstore.OrgStore`. The passphrase of the organisation's
keystore comes from ``TESSERA_SDK_PASSPHRASE`` or a hidden prompt. The key custodian's
fingerprint (``--custodian``) is the one the custodian read out by phone; nothing is
installed until one is pinned, and only blobs the pinned custodian signed are.
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

_CUSTODIAN_HELP = (
    "The key custodian's fingerprint, as the custodian read it out to you "
    "(`tessera-keys identity` prints it); pins it."
)


@click.command()
@click.option("--org", required=True, help="Your organisation's name, as the custodian knows it.")
@click.option("--custodian", default=None, metavar="FINGERPRINT", help=_CUSTODIAN_HELP)
@_dir_option
def init(org: str, custodian: str | None, directory: Path) -> None:
    """Make the organisation's identity: key pairs, an encrypted keystore, a public key file."""
    passphrase = check_new_passphrase(org_passphrase(confirm=True))
    store = OrgStore.create(directory, org, passphrase, custodian=custodian)
    click.echo(f"initialised organisation {store.org} in {store.directory}")
    click.echo(f"public key file for the custodian: {store.public_key_path}")
    click.echo(f"fingerprint (read it out to the custodian): {store.fingerprint}")
    if store.custodian is not None:
        click.echo(f"pinned key custodian {store.custodian}")
    else:
        click.echo("no key custodian pinned yet: `tessera-sdk keys --custodian FINGERPRINT`")


@click.command("install-key")
@click.argument("blob", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--custodian", default=None, metavar="FINGERPRINT", help=_CUSTODIAN_HELP)
@_dir_option
def install_key(blob: Path, custodian: str | None, directory: Path) -> None:
    """Check that BLOB is signed by the pinned custodian, unwrap it into the keystore.

    The first key version of a domain is used at once; a newer one waits until you run
    `tessera-sdk keys --accept VERSION`.
    """
    store = OrgStore.open(directory, org_passphrase())
    installed = store.install_blob(blob.read_bytes(), source=str(blob), custodian=custodian)
    click.echo(
        f"installed domain {installed.domain} {installed.version} "
        f"(key id {installed.key_id}, fingerprint {installed.fingerprint}) for {store.org}, "
        f"signed by custodian {store.custodian}"
    )
    if installed.use == "waiting":
        click.echo(
            f"{installed.version} waits to be accepted: tokenise keeps the accepted version "
            f"until you run `tessera-sdk keys --dir {directory} --accept {installed.version}`"
        )


@click.command("keys")
@click.option("--custodian", default=None, metavar="FINGERPRINT", help=_CUSTODIAN_HELP)
@click.option(
    "--accept",
    "accept",
    default=None,
    metavar="VERSION",
    help="Make an installed key version (e.g. v2) the one tokenise uses by default.",
)
@click.option("--domain", default=None, help="The domain of --accept, if several have it.")
@_dir_option
def keys_command(
    custodian: str | None, accept: str | None, domain: str | None, directory: Path
) -> None:
    """List installed domain keys: version, key id, fingerprint, use; never key bytes.

    USE is `in use` for the version tokenise uses by default, `waiting` for a newer one
    not yet accepted, `kept` for an older one.
    """
    store = OrgStore.open(directory, org_passphrase())
    if custodian is not None:
        click.echo(f"pinned key custodian {store.pin_custodian(custodian)}")
    if accept is not None:
        accepted = store.accept_version(accept, domain=domain)
        click.echo(
            f"accepted domain {accepted.domain} {accepted.version} "
            f"(fingerprint {accepted.fingerprint}): tokenise uses it from now on"
        )
    installed = store.installed()
    click.echo(f"organisation {store.org}, public key fingerprint {store.fingerprint}")
    click.echo(f"key custodian: {store.custodian or 'none pinned (use --custodian)'}")
    if not installed:
        click.echo("no domain keys installed yet: run `tessera-sdk install-key FILE`")
        return
    click.echo(
        f"{'DOMAIN':<24} {'VERSION':<8} {'USE':<8} {'KEY ID':<21} {'FINGERPRINT':<15} INSTALLED"
    )
    for key in installed:
        click.echo(
            f"{key.domain:<24} {key.version:<8} {key.use:<8} {key.key_id:<21} "
            f"{key.fingerprint:<15} {key.installed_at}"
        )


KEY_COMMANDS: tuple[click.Command, ...] = (init, install_key, keys_command)


def register_key_commands(group: click.Group) -> None:
    """Add ``init``, ``install-key`` and ``keys`` to the ``tessera-sdk`` group."""
    for command in KEY_COMMANDS:
        group.add_command(command)
