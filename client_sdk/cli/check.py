"""``tessera-sdk check``: read an extract as mapped and print its quality report.

Nothing leaves the machine. The summary goes to the terminal; ``--json FILE`` also writes the
report for machines (``-`` for standard output). The report never holds a value from the
extract: counts, line numbers, column names and reasons only.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from client_sdk.mapping import load_mapping
from client_sdk.output import check_output, write_private_text
from client_sdk.pipeline import iter_records
from client_sdk.quality import QualityCollector, QualityReport

__all__ = ["check_command", "render_report"]

_GRADE_STYLE = {"Gold": "bold yellow", "Silver": "bold white", "Bronze": "bold dark_orange3"}
_SHOWN_PROBLEMS = 10
_SKIPPED = {"csv": "lines that are not records", "fhir": "other resources"}
_MONTHS = (
    "January February March April May June July August September October November December"
).split()


def _percent(value: float) -> str:
    return f"{value:.1%}"


def render_report(report: QualityReport, console: Console) -> None:
    """Print the human summary of a quality report.

    Args:
        report: the report to show.
        console: where to print it.
    """
    console.print(
        f"[bold]{report.source}[/bold] ({report.format}): {report.rows_read:,} rows read, "
        f"{report.records_used:,} used, {report.rows_rejected:,} rejected"
        + (
            f", {report.rows_skipped:,} {_SKIPPED.get(report.format, 'entries')} skipped"
            if report.rows_skipped
            else ""
        )
    )
    table = Table(show_edge=False, header_style="bold")
    for heading in ("field", "column", "valid", "missing", "invalid", "placeholder", "complete"):
        table.add_column(heading, justify="left" if heading in ("field", "column") else "right")
    for quality in report.fields:
        if not quality.mapped:
            table.add_row(quality.field, "[dim]not mapped[/dim]", "", "", "", "", "")
            continue
        table.add_row(
            quality.field,
            quality.column or "",
            f"{quality.valid:,}",
            f"{quality.missing:,}",
            f"{quality.invalid:,}",
            f"{quality.placeholder:,}",
            _percent(quality.completeness),
        )
    console.print(table)
    console.print(
        f"records sharing an NHS number with an earlier record: {report.duplicate_nhs_numbers:,}"
    )
    partial = sum(quality.partial for quality in report.fields)
    if partial:
        console.print(
            f"dates of birth with only a year, or a year and month: {partial:,} "
            "(compared by year and month; no key on the date)"
        )
    for heaped in report.date_of_birth_heaping:
        console.print(
            f"[bold yellow]warning[/bold yellow]: {heaped.share:.1%} of dates of birth "
            f"({heaped.records:,}) fall on {heaped.day} {_MONTHS[heaped.month - 1]}, "
            f"{heaped.times_expected:.1f}× the days around it: default dates of birth?"
        )
    for title, problems, more in (
        ("rejected rows", report.problems, report.problems_not_listed),
        ("invalid values", report.value_problems, report.value_problems_not_listed),
    ):
        if not problems:
            continue
        console.print(f"[bold]{title}[/bold]:")
        for problem in problems[:_SHOWN_PROBLEMS]:
            where = f"{report.position} {problem.line}" + (
                f", {problem.column}" if problem.column else ""
            )
            console.print(f"  {where}: {problem.reason}", markup=False)
        hidden = len(problems) - _SHOWN_PROBLEMS + more
        if hidden > 0:
            console.print(f"  … and {hidden:,} more (all counted; see --json)")
    style = _GRADE_STYLE.get(report.grade, "bold red")
    console.print(f"grade: [{style}]{report.grade}[/{style}]")
    for note in report.grade_notes:
        console.print(f"  {note}", markup=False)


@click.command("check")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--mapping",
    "mapping_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The mapping TOML: which columns are which identifiers (docs/mapping.md).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Also write the report as JSON to this file ('-' for standard output; mode 0600).",
)
@click.option("--force", is_flag=True, help="Replace an existing --json file.")
def check_command(
    input_path: Path, mapping_path: Path, json_path: Path | None, *, force: bool
) -> None:
    """Check an extract's data quality: completeness, validity, placeholders, a grade.

    Reads INPUT (CSV, FHIR NDJSON or a FHIR Bundle) as the mapping says, normalises every
    identifier and reports per field how many values are valid, missing, invalid or
    placeholders, duplicate NHS numbers, rejected rows with line numbers, days of the year
    that hold far more dates of birth than the days around them (default dates), and the
    grade (Gold, Silver, Bronze or Not rated; docs/quality.md). Nothing leaves this machine.
    The --json file is never one of the inputs, and an existing one is replaced only with
    --force.
    """
    to_stdout = json_path is not None and str(json_path) == "-"
    if json_path is not None and not to_stdout:
        check_output(
            json_path,
            inputs=[("the extract", input_path), ("the mapping", mapping_path)],
            force=force,
        )
    mapping = load_mapping(mapping_path)
    collector = QualityCollector(source=input_path.name)
    for _ in iter_records(input_path, mapping, report=collector, progress=True):
        pass
    report = collector.report()
    console = Console(stderr=to_stdout, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=to_stdout, highlight=False, width=120)
    render_report(report, console)
    if json_path is not None:
        text = json.dumps(report.model_dump(mode="json"), indent=2) + "\n"
        if to_stdout:
            click.echo(text, nl=False)
        else:
            write_private_text(json_path, text)
