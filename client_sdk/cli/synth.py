"""``tessera-sdk synth``: the synthetic data generator's command, when it is installed.

The generator is not part of the SDK an organisation installs: it is the ``tessera-synth``
distribution (``synth/`` in the repository), which registers its command in the
``tessera.sdk_commands`` entry-point group. :class:`SdkGroup` (the ``tessera-sdk`` group)
gives that command for ``synth`` when it is installed, loading it only when ``synth`` is
asked for; otherwise ``synth`` is :data:`synth_command`, which says in one line how to
install it (exit 19). The SDK never imports the generator.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import click

from client_sdk.errors import ExtraMissingError

__all__ = ["COMMANDS_GROUP", "SYNTH_INSTALL_HINT", "SdkGroup", "synth_command"]

COMMANDS_GROUP = "tessera.sdk_commands"
SYNTH_INSTALL_HINT = (
    "the synthetic data generator is not installed: from a Tessera checkout run "
    "`pip install ./synth` (or `make setup`); organisations do not need it"
)


def _installed(name: str) -> click.Command | None:
    """The command ``name`` that an installed distribution registers, if it loads."""
    for entry in entry_points(group=COMMANDS_GROUP, name=name):
        try:
            command = entry.load()
        except ImportError:  # its metadata left behind, its package gone
            return None
        if isinstance(command, click.Command):
            return command
    return None


@click.command(
    "synth",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def synth_command(args: tuple[str, ...]) -> None:
    """Invent extracts with ground truth (needs tessera-synth: pip install ./synth)."""
    del args  # whatever they were, the generator is not there to take them
    raise ExtraMissingError(SYNTH_INSTALL_HINT)


class SdkGroup(click.Group):
    """``tessera-sdk``'s group: ``synth`` is the generator's own command when installed."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == synth_command.name:
            installed = _installed(cmd_name)
            if installed is not None:
                return installed
        return super().get_command(ctx, cmd_name)
