"""What the three CLIs share: one-line errors, exit codes, passphrases from env or prompt."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from keys.errors import MissingSecretError, TesseraError

__all__ = ["main_wrapper", "read_passphrase", "run_cli"]

_IO_ERROR_EXIT = 74
"""sysexits.h EX_IOERR: a file could not be read or written."""


def read_passphrase(env_var: str, *, what: str, confirm: bool = False) -> str:
    """A passphrase from ``env_var`` or, on a terminal, a hidden prompt; never from argv."""
    value = os.environ.get(env_var)
    if value:
        return value
    if not sys.stdin.isatty():
        raise MissingSecretError(f"set {env_var} or run on a terminal to be asked for the {what}")
    entered: str = click.prompt(
        f"{what.capitalize()}", hide_input=True, confirmation_prompt=confirm, err=True
    )
    return entered


def run_cli(group: click.Group, prog_name: str, argv: list[str] | None = None) -> int:
    """Run ``group``; a :class:`TesseraError` becomes one line on stderr and its exit code.

    An ``OSError`` no command turned into a :class:`TesseraError` (a read-only or full
    disk, a missing directory) becomes one line naming the file, exit 74.

    ``--debug`` anywhere on the command line keeps the traceback (and DEBUG logging).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        result: Any = group.main(args=args, prog_name=prog_name, standalone_mode=False)
    except TesseraError as exc:
        if debug:
            raise
        click.echo(f"{prog_name}: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo(f"{prog_name}: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo(f"{prog_name}: interrupted", err=True)
        return 130
    except OSError as exc:
        # A file a command reads or writes (read-only, full, missing directory): one line.
        if debug:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        click.echo(f"{prog_name}: error: cannot use{where}: {exc.strerror or exc}", err=True)
        return _IO_ERROR_EXIT
    return result if isinstance(result, int) else 0


def main_wrapper(group: click.Group, prog_name: str) -> Callable[[], None]:
    """A console-script entry point for ``group``."""

    def main() -> None:
        sys.exit(run_cli(group, prog_name))

    return main
