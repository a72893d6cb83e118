"""``tessera-broker admin opt-out-register declare|list``: the operator designates registers.

See :mod:`broker.opt_out_registers` for why only the operator may.
"""

from __future__ import annotations

from pathlib import Path

import click

from broker.cli.operator import data_dir_option, operator_runtime
from broker.opt_out_registers import declare_opt_out_register
from broker.runtime import utc_now
from broker.store.datasets import list_opt_out_registers

__all__ = ["opt_out_group"]


@click.group(name="opt-out-register")
def opt_out_group() -> None:
    """Opt-out registers: datasets whose persons leave research releases."""


@opt_out_group.command(name="declare")
@click.argument("dataset")
@click.option(
    "--body",
    required=True,
    help="The body approved to hold the register, e.g. 'NHS England: National Data Opt-out'.",
)
@data_dir_option
def declare_command(dataset: str, body: str, data_dir: Path | None) -> None:
    """Make DATASET (ORG/NAME, tokens only) the opt-out register held by --body."""
    with operator_runtime(data_dir) as runtime:
        register = declare_opt_out_register(
            runtime.store, dataset=dataset, body=body, now=utc_now()
        )
    click.echo(f"{register.dataset} is the opt-out register of {register.body}", err=True)


@opt_out_group.command(name="list")
@data_dir_option
def list_command(data_dir: Path | None) -> None:
    """Every opt-out register: dataset, since, body (tab-separated)."""
    with operator_runtime(data_dir) as runtime:
        for register in list_opt_out_registers(runtime.store):
            click.echo(f"{register.dataset}\t{register.since[:10]}\t{register.body}")
