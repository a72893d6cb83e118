"""``tessera-keys``: what the key custodian (a governance lead) runs.

Thin over :mod:`keys.keystore`, :mod:`keys.rotation` and :mod:`keys.wrapping`. The
passphrase comes from ``TESSERA_KEYS_PASSPHRASE`` or a hidden prompt, never from argv.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from keys.cliutil import main_wrapper, read_passphrase
from keys.errors import KeyManagementError
from keys.keystore import (
    DEFAULT_LOCK_TIMEOUT,
    Keystore,
    check_new_passphrase,
    create_domain,
    list_domains,
)
from keys.rotation import (
    custodian_identity,
    grant_key,
    new_custodian_contents,
    retire_version,
    rotate_domain,
)
from keys.wrapping import Kem, OrgPublicKey

__all__ = ["cli", "main"]

_PASSPHRASE_ENV = "TESSERA_KEYS_PASSPHRASE"
_KEYSTORE_ENV = "TESSERA_KEYS_KEYSTORE"
_NEW_PASSPHRASE_ENV = "TESSERA_KEYS_NEW_PASSPHRASE"

_F = TypeVar("_F", bound=Callable[..., Any])


def _keystore_options(func: _F) -> _F:
    func = click.option(
        "--lock-timeout",
        type=click.FloatRange(min=0),
        default=DEFAULT_LOCK_TIMEOUT,
        show_default=True,
        help="Seconds to wait while another process is changing the keystore.",
    )(func)
    func = click.option(
        "--keystore",
        "keystore_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar=_KEYSTORE_ENV,
        required=True,
        help=f"The custodian keystore file (or set {_KEYSTORE_ENV}).",
    )(func)
    return func


def _open(keystore_path: Path, lock_timeout: float) -> Keystore:
    passphrase = read_passphrase(_PASSPHRASE_ENV, what="keystore passphrase")
    return Keystore.open(keystore_path, passphrase, lock_timeout=lock_timeout)


@click.group(
    help="Tessera key custodian: the encrypted keystore, linkage domains and their key "
    "versions, and grants of domain keys to organisations.\n\n"
    f"The keystore passphrase comes from {_PASSPHRASE_ENV} or a hidden prompt, never from "
    "the command line. Add --debug to any command for a traceback."
)
@click.version_option(package_name="tessera")
def cli() -> None:
    """Root command group."""


@cli.command()
@_keystore_options
def init(keystore_path: Path, lock_timeout: float) -> None:
    """Create a new encrypted custodian keystore and its identity key (asks twice).

    The identity key signs every grant; read its fingerprint out to each organisation.
    """
    passphrase = read_passphrase(_PASSPHRASE_ENV, what="new keystore passphrase", confirm=True)
    check_new_passphrase(passphrase)
    store = Keystore.create(
        keystore_path, passphrase, contents=new_custodian_contents(), lock_timeout=lock_timeout
    )
    click.echo(f"created keystore {keystore_path} (encrypted, mode 0600)")
    click.echo(
        f"custodian fingerprint (read it out to every organisation): {custodian_identity(store)}"
    )


@cli.command()
@click.option(
    "--create",
    is_flag=True,
    help="Make the identity key if this keystore predates signed grants (never replaces one).",
)
@_keystore_options
def identity(create: bool, keystore_path: Path, lock_timeout: float) -> None:
    """Print the custodian's fingerprint alone, for organisations to pin.

    Every grant is signed with the custodian's identity key; organisations install only
    blobs signed by the key whose fingerprint they were read out.
    """
    click.echo(custodian_identity(_open(keystore_path, lock_timeout), create=create))


@cli.command()
@_keystore_options
def passphrase(keystore_path: Path, lock_timeout: float) -> None:
    """Change the keystore's passphrase (asks for the new one twice)."""
    store = _open(keystore_path, lock_timeout)
    new = read_passphrase(_NEW_PASSPHRASE_ENV, what="new keystore passphrase", confirm=True)
    store.change_passphrase(check_new_passphrase(new))
    click.echo(f"changed the passphrase of {keystore_path}")


@cli.group()
def domain() -> None:
    """Linkage domains and their key versions."""


@domain.command("create")
@click.argument("name")
@_keystore_options
def domain_create(name: str, keystore_path: Path, lock_timeout: float) -> None:
    """Create linkage domain NAME with a random key version v1."""
    version = create_domain(_open(keystore_path, lock_timeout), name)
    click.echo(
        f"created domain {name} {version.version} "
        f"(key id {version.key_id}, fingerprint {version.fingerprint})"
    )


@domain.command("rotate")
@click.argument("name")
@_keystore_options
def domain_rotate(name: str, keystore_path: Path, lock_timeout: float) -> None:
    """Add a new random key version to NAME and make it current; old versions are kept."""
    version = rotate_domain(_open(keystore_path, lock_timeout), name)
    click.echo(
        f"rotated domain {name}: {version.version} is current "
        f"(key id {version.key_id}, fingerprint {version.fingerprint}); "
        "grant it to every organisation"
    )


@domain.command("retire")
@click.argument("name")
@click.argument("version")
@_keystore_options
def domain_retire(name: str, version: str, keystore_path: Path, lock_timeout: float) -> None:
    """Destroy the key material of VERSION of NAME (not the current one)."""
    retired = retire_version(_open(keystore_path, lock_timeout), name, version=version)
    click.echo(f"retired domain {name} {retired.version} (key id {retired.key_id})")


@domain.command("list")
@_keystore_options
def domain_list(keystore_path: Path, lock_timeout: float) -> None:
    """List domains and key versions: ids, fingerprints and status, never key bytes."""
    domains = list_domains(_open(keystore_path, lock_timeout))
    if not domains:
        click.echo("no domains yet: run `tessera-keys domain create NAME`")
        return
    click.echo(
        f"{'DOMAIN':<24} {'VERSION':<8} {'STATUS':<8} {'KEY ID':<21} {'FINGERPRINT':<15} CREATED"
    )
    for found in domains:
        for v in found.versions:
            click.echo(
                f"{found.name:<24} {v.version:<8} {v.status:<8} {v.key_id:<21} "
                f"{v.fingerprint:<15} {v.created_at}"
            )


@cli.command()
@click.argument("public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def fingerprint(public_key: Path) -> None:
    """Print the fingerprint of an organisation's public key file, to compare by phone."""
    public = OrgPublicKey.from_file_bytes(public_key.read_bytes(), source=str(public_key))
    click.echo(f"{public.org} {public.fingerprint}")


@cli.command()
@click.argument("domain_name", metavar="DOMAIN")
@click.option("--org", required=True, help="The organisation the key is granted to.")
@click.option(
    "--public-key",
    "public_key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The organisation's public key file (from `tessera-sdk init`).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the wrapped key (refuses to overwrite).",
)
@click.option("--version", "version", default=None, help="Key version, e.g. v2 [default: current].")
@click.option(
    "--kem",
    type=click.Choice([k.value for k in Kem]),
    default=Kem.HYBRID.value,
    show_default=True,
    help="hybrid: ML-KEM-768+X25519 (post-quantum); x25519: classical only.",
)
@_keystore_options
def grant(
    domain_name: str,
    org: str,
    public_key: Path,
    out: Path,
    version: str | None,
    kem: str,
    keystore_path: Path,
    lock_timeout: float,
) -> None:
    """Wrap a key version of DOMAIN for one organisation (HPKE) and sign it; send it --out."""
    recipient = OrgPublicKey.from_file_bytes(public_key.read_bytes(), source=str(public_key))
    if recipient.org != org:
        raise KeyManagementError(
            f"{public_key} is the public key of organisation {recipient.org}, not {org}"
        )
    granted = grant_key(
        _open(keystore_path, lock_timeout), domain_name, recipient, version=version, kem=Kem(kem)
    )
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise KeyManagementError(f"{out} already exists: choose another --out") from None
    except OSError as exc:
        raise KeyManagementError(f"{out}: cannot write the key blob: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(granted.blob)
    click.echo(
        f"granted domain {granted.domain} {granted.version} "
        f"(key id {granted.key_id}, fingerprint {granted.key_fingerprint}) to {granted.org}"
    )
    click.echo(
        f"organisation public key fingerprint: {granted.org_fingerprint} "
        "(check it matches what the organisation read out)"
    )
    click.echo(f"signed by custodian {granted.custodian_fingerprint}")
    click.echo(f"wrote {out} ({granted.kem.value}); send it to {granted.org}")


main = main_wrapper(cli, "tessera-keys")
