"""Writing released tables to CSV or Parquet, safe to open in a spreadsheet.

A text value that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would
be run as a formula by Excel, LibreOffice or Google Sheets (CSV injection). CSV output
prefixes such values with an apostrophe (:func:`neutralise`); numbers, negative numbers
included, are left as they are. Parquet keeps typed columns that spreadsheets do not
evaluate, and is written unchanged.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from client_sdk.errors import InputError

__all__ = ["FORMULA_PREFIXES", "ExportFormat", "neutralise", "write_table"]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ExportFormat = Literal["csv", "parquet"]


def neutralise(value: str | None) -> str:
    """The value as a spreadsheet will show it and never evaluate it ('' for ``None``)."""
    if value is None:
        return ""
    if value.startswith(FORMULA_PREFIXES):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def write_table(
    path: Path,
    columns: Sequence[str],
    rows: Sequence[Sequence[str | int | None]],
    *,
    fmt: ExportFormat = "csv",
) -> None:
    """Write ``rows`` under ``columns`` to ``path`` (mode 0600: it is personal data).

    Raises:
        InputError: the file cannot be written, or Parquet support is missing.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None
    if fmt == "csv":
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([neutralise(c) for c in columns])
            for row in rows:
                writer.writerow([neutralise(v) if not isinstance(v, int) else str(v) for v in row])
        return
    os.close(fd)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("Parquet output needs pyarrow: pip install 'tessera[sdk]'") from None
    data = {
        name: [None if row[i] is None else str(row[i]) for row in rows]
        for i, name in enumerate(columns)
    }
    table = pa.table({name: pa.array(values, type=pa.string()) for name, values in data.items()})
    pq.write_table(table, path)
