"""``tessera-sdk synth``: the synthetic data generator's command, when it is installed.

The generator is not part of the SDK an organisation installs: it is the ``tessera-synth``
distribution (``synth/`` in the repository), which registers its command in the
``tessera.sdk_commands`` entry-point group. This command finds it there and hands it its
arguments; without it, one line says how to install it. No import of the generator, so
the SDK never depends on it.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import click

from client_sdk.errors import ExtraMissingError

__all__ = ["COMMANDS_GROUP", "SYNTH_INSTALL_HINT", "synth_command"]

COMMANDS_GROUP = "tessera.sdk_commands"
SYNTH_INSTALL_HINT = (
    "the synthetic data generator is not installed: from a Tessera checkout run "
    "`pip install ./synth` (or `make setup`); organisations do not need it"
)


@click.command(
    "synth",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def synth_command(args: tuple[str, ...]) -> None:
    """Invent GP, hospital and opt-out extracts with ground truth (needs tessera-synth)."""
    found = [e for e in entry_points(group=COMMANDS_GROUP) if e.name == "synth"]
    if not found:
        raise ExtraMissingError(SYNTH_INSTALL_HINT)
    try:
        command = found[0].load()
    except ImportError:  # its metadata left behind, its package gone
        raise ExtraMissingError(SYNTH_INSTALL_HINT) from None
    if not isinstance(command, click.Command):
        raise ExtraMissingError(SYNTH_INSTALL_HINT)
    command.main(list(args), prog_name="tessera-sdk synth", standalone_mode=False)
