"""``tessera-sdk``: what an organisation's IT (or a researcher) runs.

Each command lives in a ``cli_*`` module beside this one and is registered here.
"""

from __future__ import annotations

import click

from client_sdk import pipeline
from client_sdk.cli.broker import (
    dataset_group,
    fetch_key_command,
    register_key_command,
    upload_command,
    whoami_command,
)
from client_sdk.cli.check import check_command
from client_sdk.cli.evaluate import truth_refs_command
from client_sdk.cli.org_keys import register_key_commands
from client_sdk.cli.release import (
    aggregate_command,
    agreement_group,
    cohort_command,
    linked_command,
    risk_command,
)
from client_sdk.cli.review import review_command
from client_sdk.cli.run import run_command
from client_sdk.cli.synth import SdkGroup, synth_command
from client_sdk.cli.tokenise import spec_group, tokenise_command
from keys.cliutil import main_wrapper

__all__ = ["COMMANDS", "build_kind", "cli", "main"]


def build_kind() -> str:
    """Whether this install runs the hot path compiled (mypyc) or as plain Python."""
    compiled = not pipeline.__file__.endswith(".py")
    return "compiled with mypyc" if compiled else "plain Python"


@click.group(
    cls=SdkGroup,
    help="Tessera client SDK: prepare, check, tokenise and upload an organisation's extract.\n\n"
    "Secrets come from the environment (TESSERA_SDK_PASSPHRASE, TESSERA_SDK_TOKEN) or a "
    "prompt, never from the command line. Add --debug to any command for a traceback.",
)
@click.version_option(package_name="tessera", message=f"%(prog)s %(version)s ({build_kind()})")
def cli() -> None:
    """Root command group."""


COMMANDS: tuple[click.Command, ...] = (
    upload_command,
    dataset_group,
    register_key_command,
    fetch_key_command,
    whoami_command,
    synth_command,
    check_command,
    truth_refs_command,
    tokenise_command,
    spec_group,
    run_command,
    agreement_group,
    cohort_command,
    aggregate_command,
    linked_command,
    risk_command,
    review_command,
)
"""The command table: every ``tessera-sdk`` command a ``cli`` module defines (the key
commands ``init``, ``install-key`` and ``keys`` are added by :func:`register_key_commands`)."""

for _command in COMMANDS:
    cli.add_command(_command)
register_key_commands(cli)

main = main_wrapper(cli, "tessera-sdk")
