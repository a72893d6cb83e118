"""``tessera-sdk synth``: write a synthetic Somerset population's extracts and ground truth.

The data is invented (docs/synthetic-data.md), so unlike every other command this one may
print counts freely; it still prints no identifier. This distribution registers the
command in the ``tessera.sdk_commands`` entry-point group, where ``tessera-sdk`` finds it.
"""

from __future__ import annotations

from pathlib import Path

import click

from client_sdk.output import write_failure
from tessera_synth.generator import generate
from tessera_synth.params import MAX_PRACTICES

__all__ = ["synth_command"]


@click.command("synth")
@click.option(
    "--persons", required=True, type=click.IntRange(min=1), help="Distinct persons to invent."
)
@click.option("--seed", required=True, type=int, help="Seed: the same seed gives the same files.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Output directory (created if missing).",
)
@click.option(
    "--practices",
    default=3,
    show_default=True,
    type=click.IntRange(1, MAX_PRACTICES),
    help="GP practices.",
)
@click.option(
    "--opt-out/--no-opt-out",
    default=True,
    show_default=True,
    help="Also write the national opt-out register (optout.csv).",
)
def synth_command(persons: int, seed: int, out_dir: Path, practices: int, opt_out: bool) -> None:
    """Invent GP, hospital and opt-out extracts of one population, with the ground truth.

    Each file comes with its mapping (mapping_*.toml); truth.csv says which rows are the
    same person and is for evaluation only. See docs/synthetic-data.md.
    """
    try:
        summary = generate(
            out_dir, persons=persons, seed=seed, practices=practices, opt_out=opt_out
        )
    except OSError as exc:
        raise write_failure(exc, out_dir) from None
    click.echo(f"{summary.persons} persons written to {summary.out_dir}")
    for dataset in summary.datasets:
        click.echo(
            f"  {dataset.name:<12} {dataset.rows:>9} rows  {dataset.path.name} "
            f"({dataset.encoding}), mapping {dataset.mapping.name}"
        )
    click.echo(f"  ground truth: {summary.truth.name}, {summary.truth_errors.name}, "
               f"{summary.truth_persons.name}")  # fmt: skip
