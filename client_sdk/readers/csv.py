"""Read a delimited text file row by row: (line number, the mapped columns' values).

Streaming, one record in memory at a time. Columns are found by header name (exact, then
ignoring case and surrounding spaces). The encoding comes from the mapping; a byte-order
mark at the start of the file wins over it (a UTF-8 BOM means UTF-8, a UTF-16 BOM UTF-16),
because Excel and Windows tools write one. A row that cannot be used (wrong number of
fields, bytes that are not valid in the encoding, a NUL character in a mapped value, an
unbalanced quote) is reported through ``on_problem`` with its line number and the reading
goes on. Columns the mapping does not name are never looked at, however long their values
(up to :data:`MAX_FIELD_CHARACTERS`).

What database and spreadsheet exports add around the data is not a record, and is passed
to ``on_skip`` rather than reported as a bad row: Excel's ``sep=;`` first line, a report's
title lines above the header (the header is the first of :data:`MAX_PREAMBLE_ROWS` rows to
hold every mapped column), the line of dashes under the header (``sqlcmd``, ``psql``), and
lines with no delimiter at the end of the file (``(123 rows affected)``, ``TOTAL ROWS: 123``,
a DOS end-of-file mark). Spaces after a delimiter are skipped, so ``1, "SMITH, John"`` is
two fields; trailing header columns with no name (a trailing delimiter on the header line)
may be absent from a row.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from difflib import get_close_matches
from operator import itemgetter
from pathlib import Path
from typing import TextIO

from client_sdk.errors import InputError
from client_sdk.normalise.nhs_number import is_untrusted_status
from client_sdk.readers.compressed import bytes_read, open_binary

__all__ = [
    "MAX_FIELD_CHARACTERS",
    "MAX_PREAMBLE_ROWS",
    "MAX_RECORD_LINES",
    "NUL_REASON",
    "ProblemSink",
    "has_undecodable",
    "open_text",
    "read_csv",
    "undecodable_reason",
    "without_unverified",
]

logger = logging.getLogger(__name__)

# Lines a report writes above the header (title, run date, population count): the header is
# the first of this many rows that holds every mapped column.
MAX_PREAMBLE_ROWS = 30

# A field may be long (free text in a column nobody mapped); a longer one is a malformed
# row. Python's csv module stops at 131,072 characters by default.
MAX_FIELD_CHARACTERS = 1 << 26

NUL_REASON = "NUL character in a value (a corrupted export?): the value cannot be trusted"
"""Why a row holding a NUL character is rejected: it would change the value's tokens."""

# A quoted field may hold line breaks (addresses); a record spanning more lines than this
# is taken to be an unbalanced quote, reported, and re-read from the line after its start.
MAX_RECORD_LINES = 10

ProblemSink = Callable[[int, str | None, str], None]
"""Called with (line, column or None, reason) for a row that is not used."""

# Excel's first line naming the delimiter ("sep=;"), and a row of rules under the header.
_SEP_LINE = re.compile(r"sep=(.)\r?\n?", re.IGNORECASE)
_RULE = re.compile(r"[-=+ ]*[-=][-=+ ]*")

_SINGLE_BYTE = frozenset({"cp1252", "iso8859-1", "iso8859-15", "cp1250", "mac-roman"})
_SNIFF_BYTES = 1 << 20
# What Windows tools call their encodings (Notepad's "ANSI" and "Unicode", Notepad++'s
# "UTF-8-BOM"), which Python does not know by those names.
_WINDOWS_NAMES = {
    "ansi": "cp1252",
    "unicode": "utf-16",
    "utf-8-bom": "utf-8",
    "utf-8 bom": "utf-8",
    "utf-8 with bom": "utf-8",
}
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _codec(path: Path, encoding: str) -> str:
    encoding = _WINDOWS_NAMES.get(" ".join(encoding.casefold().split()), encoding)
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise InputError(f"{path}: unknown encoding {encoding!r}") from None
    try:
        with open_binary(path) as raw:
            start = raw.read(4)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    for bom, codec in _BOMS:
        if start.startswith(bom):
            if codecs.lookup(codec).name != name and not (codec == "utf-8-sig" == name):
                logger.info("%s: byte-order mark found; reading as %s", path, codec)
            return codec
    if name in _SINGLE_BYTE and _looks_like_utf8(path):
        raise InputError(
            f"{path}: the file is UTF-8 but the mapping says {encoding!r}: accented names "
            f'would be garbled; set [source] encoding = "utf-8"'
        )
    return "utf-8-sig" if name == "utf-8" else name


def _looks_like_utf8(path: Path) -> bool:
    """Whether the start of the file has multi-byte UTF-8 and nothing that is not UTF-8.

    Text in a single-byte Windows or Latin encoding with accented letters is almost never
    valid UTF-8, so such a sample means the file is UTF-8 whatever the mapping says.
    """
    with open_binary(path) as raw:
        sample = raw.read(_SNIFF_BYTES)
    if sample.isascii():
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut by the end of the sample is still UTF-8
        return exc.start >= len(sample) - 3 and exc.reason == "unexpected end of data"
    return True


def open_text(path: Path, encoding: str) -> TextIO:
    """Open ``path`` for streaming text in ``encoding`` (BOM-aware; bad bytes kept escaped).

    A gzip-compressed file (told by its magic number, whatever its name) is decompressed
    as it is read (:mod:`client_sdk.readers.compressed`).

    Raises:
        InputError: the encoding is unknown or the file cannot be opened.
    """
    codec = _codec(path, encoding)
    raw = open_binary(path)
    return io.TextIOWrapper(raw, encoding=codec, errors="surrogateescape", newline="")


def _read_header(
    reader: Iterator[list[str]], lines: _Lines, path: Path, wanted: Sequence[str]
) -> tuple[list[str], list[int]]:
    """The header (the first row with every mapped column), and the lines of rows above it.

    With no such row, the error names the missing columns of the row that holds the most
    mapped columns (the header, short of some), with its closest names to each.
    """
    first: list[str] | None = None
    best: tuple[list[str], list[str]] | None = None  # (row, its missing columns)
    above: list[int] = []
    for _ in range(MAX_PREAMBLE_ROWS):
        start = len(lines.current) + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InputError(f"{path}: cannot read the header: {exc}") from None
        if not row:
            continue
        missing = _lookup(row, wanted)[1]
        if not missing:
            return row, above
        if best is None or len(missing) < len(best[1]):
            best = row, missing
        first = first or row
        above.append(start)
    if first is None or best is None:
        raise InputError(f"{path}: the file is empty")
    raise _missing_columns(path, best[1], wanted, best[0])


def _lookup(header: list[str], wanted: Sequence[str]) -> tuple[list[int], list[str]]:
    """Each wanted column's index in the header (exact name, then loosely), and the missing."""
    exact = {name: i for i, name in enumerate(header)}
    loose: dict[str, int] = {}
    for i, name in enumerate(header):
        loose.setdefault(" ".join(name.split()).casefold(), i)
    indexes: list[int] = []
    missing: list[str] = []
    for name in wanted:
        index = exact.get(name)
        if index is None:
            index = loose.get(" ".join(name.split()).casefold())
        if index is None:
            missing.append(name)
            index = -1
        indexes.append(index)
    return indexes, missing


def _missing_columns(
    path: Path, missing: list[str], wanted: Sequence[str], header: list[str]
) -> InputError:
    """One line naming each missing column and the header's closest names to it.

    Only a row that holds some mapped column is a header, so only then are its names
    offered (a row of data must never be quoted in an error).
    """
    if len(set(missing)) == len(set(wanted)):
        return InputError(
            f"{path}: none of the mapped columns is in the header "
            f"(check [source] delimiter and encoding, and the column names)"
        )
    loose = {" ".join(name.split()).casefold(): name for name in reversed(header) if name}
    described = []
    for name in dict.fromkeys(missing):
        close = get_close_matches(" ".join(name.split()).casefold(), loose, n=3, cutoff=0.6)
        hint = ", ".join(repr(loose[c]) for c in close)
        hint = f"closest in the header: {hint}" if close else "nothing similar in the header"
        described.append(f"{name!r} ({hint})")
    return InputError(f"{path}: mapped columns not in the header: {'; '.join(described)}")


def _find_columns(path: Path, header: list[str], wanted: Sequence[str]) -> list[int]:
    indexes, missing = _lookup(header, wanted)
    if missing:
        raise _missing_columns(path, missing, wanted, header)
    duplicated = [header[i] for i in dict.fromkeys(indexes) if header.count(header[i]) > 1]
    if duplicated:
        names = ", ".join(repr(d) for d in duplicated)
        raise InputError(f"{path}: mapped columns appear twice in the header: {names}")
    return indexes


def has_undecodable(values: Sequence[str]) -> bool:
    """Whether any value holds bytes that were not valid in the file's encoding."""
    text = "".join(values)
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def undecodable_reason(encoding: str) -> str:
    """Why a row with bytes not valid in ``encoding`` is rejected, with a hint for UTF-8.

    A Windows export read as UTF-8 loses exactly the rows with accented names (é, ñ, ü
    are single bytes in cp1252), so the reason names the setting that reads them.
    """
    reason = f"bytes not valid in {encoding}"
    try:
        utf8 = codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")
    except LookupError:
        utf8 = False
    if utf8:
        reason += ': a Windows export? try [source] encoding = "cp1252"'
    return reason


def _nul_column(values: Sequence[str], columns: Sequence[str]) -> str | None:
    """The first mapped column whose value holds a NUL character."""
    for value, column in zip(values, columns, strict=False):
        if "\x00" in value:
            return column
    return None


def _one_column(index: int) -> Callable[[list[str]], Sequence[str]]:
    """Like ``itemgetter(index)`` but always a tuple, as ``itemgetter(i, j, …)`` gives."""

    def pick(row: list[str]) -> Sequence[str]:
        return (row[index],)

    return pick


def _is_rule(row: list[str]) -> bool:
    """Whether a row is only dashes (the line ``sqlcmd`` and ``psql`` draw under a header)."""
    return all(_RULE.fullmatch(value) or not value for value in row) and any(row)


def _skip_sep_line(lines: _Lines, path: Path, delimiter: str) -> None:
    """Skip Excel's ``sep=`` line, refusing one that names another delimiter."""
    first = next(lines, None)
    lines.current.clear()
    if first is None:
        return
    declared = _SEP_LINE.fullmatch(first)
    if declared is None:
        lines.pending.append(first)
    elif declared.group(1) != delimiter:
        raise InputError(
            f"{path}: the file's first line declares the delimiter {declared.group(1)!r}; "
            f"set [source] delimiter to match"
        )
    else:
        lines.current.append(first)


def _skip_rule(reader: Iterator[list[str]], lines: _Lines) -> bool:
    """Read past a rule of dashes right under the header; put back any other first row."""
    lines.current.clear()
    try:
        row = next(reader)
    except (StopIteration, csv.Error):
        row = []
    if len(lines.current) == 1 and row and _is_rule(row):
        return True
    lines.pending.extendleft(reversed(lines.current))
    return False


def _report_held(held: list[tuple[int, int]], rows: int, sink: ProblemSink, width: int) -> None:
    """Report the held lines that a record has followed (and forget them)."""
    followed = [line for line, before in held if before < rows]
    for line in followed:
        sink(line, None, f"malformed row: 1 fields, header has {width}")
    del held[: len(followed)]


def _swallowed_rows(record_lines: list[str], delimiter: str, width: int) -> bool:
    """Whether a multi-line record looks like an unbalanced quote that ate whole rows."""
    if len(record_lines) > MAX_RECORD_LINES:
        return True
    return width >= 3 and any(line.count(delimiter) >= width - 1 for line in record_lines[1:])


class _Lines:
    """The file's lines, with lines of a rejected record pushed back to be read again."""

    __slots__ = ("current", "pending", "source")

    def __init__(self, source: TextIO) -> None:
        self.source = source
        self.pending: deque[str] = deque()
        self.current: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.pending.popleft() if self.pending else next(self.source)
        self.current.append(line)
        return line


def read_csv(
    path: Path,
    columns: Sequence[str],
    *,
    encoding: str = "utf-8",
    delimiter: str = ",",
    quotechar: str = '"',
    on_problem: ProblemSink | None = None,
    on_skip: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Generator[tuple[int, Sequence[str]], None, None]:
    """Yield ``(line, values)`` for each data row, ``values`` in the order of ``columns``.

    Args:
        path: the CSV file.
        columns: header names to pick, in order (one name may appear twice).
        encoding: a Python codec name; ``utf-8`` also skips a BOM.
        delimiter: the field separator.
        quotechar: the quote character.
        on_problem: receives ``(line, column, reason)`` for rows not yielded.
        on_skip: receives the line of each line that is not a record (a ``sep=`` line, a
            report's title above the header, a rule under the header, a trailer such as
            ``(12 rows affected)``).
        on_progress: receives the byte offset reached, now and then.

    Yields:
        The physical line number where the row starts (the header is line 1) and the values.

    Raises:
        InputError: unknown encoding, unreadable or empty file, undecodable header, or
            mapped columns missing from the header.
    """
    sink: ProblemSink = on_problem or (lambda line, column, reason: None)
    skip: Callable[[int], None] = on_skip or (lambda line: None)
    undecodable = undecodable_reason(encoding)
    if csv.field_size_limit() < MAX_FIELD_CHARACTERS:
        csv.field_size_limit(MAX_FIELD_CHARACTERS)
    with open_text(path, encoding) as text:
        lines = _Lines(text)
        _skip_sep_line(lines, path, delimiter)
        if lines.current:
            skip(1)
        reader = csv.reader(
            lines, delimiter=delimiter, quotechar=quotechar, skipinitialspace=delimiter != " "
        )
        header, above = _read_header(reader, lines, path, columns)
        for title in above:
            skip(title)
        if has_undecodable(header):
            raise InputError(f"{path}: the header is not valid {encoding}; check [source] encoding")
        indexes = _find_columns(path, header, columns)
        pick: Callable[[list[str]], Sequence[str]] = (
            itemgetter(*indexes) if len(indexes) > 1 else _one_column(indexes[0])
        )
        width = len(header)
        # Trailing header columns with no name (a trailing delimiter) may be left out of a row.
        named = width
        while named > max(indexes) + 1 and not header[named - 1].strip():
            named -= 1
        line = 1 + len(lines.current)
        if _skip_rule(reader, lines):
            skip(line)
            line += 1
        rows = 0
        # Lines with no delimiter: (line, records read before it). One followed by a record
        # is a bad row; the rest, at the end of the file, are a trailer and not records.
        held: list[tuple[int, int]] = []
        while True:
            lines.current.clear()
            start = line
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                line += len(lines.current)
                sink(start, None, f"malformed row: {exc}")
                continue
            span = len(lines.current)
            line += span
            if not row:
                continue
            if len(row) != width or not row[0]:
                if not any(row):  # a spreadsheet's row of empty fields (",,,,")
                    continue
                if held:
                    _report_held(held, rows, sink, width)
                if len(row) == 1 and width > 1 and span == 1:
                    held.append((start, rows))
                    continue
                if len(row) != width and not (
                    named <= len(row) < width or (len(row) > width and not any(row[width:]))
                ):
                    if span > 1:
                        lines.pending.extendleft(reversed(lines.current[1:]))
                        line = start + 1
                        sink(start, None, "malformed row: unbalanced quote")
                    else:
                        sink(start, None, f"malformed row: {len(row)} fields, header has {width}")
                    continue
            if span > 1 and _swallowed_rows(lines.current, delimiter, width):
                lines.pending.extendleft(reversed(lines.current[1:]))
                line = start + 1
                sink(start, None, "malformed row: unbalanced quote")
                continue
            values = pick(row)
            joined = "".join(values)
            if not joined.isascii() and has_undecodable(values):
                sink(start, None, undecodable)
                continue
            if "\x00" in joined:
                sink(start, _nul_column(values, columns), NUL_REASON)
                continue
            yield start, values
            rows += 1
            if on_progress is not None and not rows & 0x3FFF:
                on_progress(bytes_read(text))
        _report_held(held, rows, sink, width)
        for trailer, _ in held:
            skip(trailer)
        if on_progress is not None:
            on_progress(bytes_read(text))


def without_unverified(
    rows: Iterator[tuple[int, Sequence[str]]],
    *,
    nhs: int,
    status: int,
    on_unverified: Callable[[int], None],
) -> Generator[tuple[int, Sequence[str]], None, None]:
    """``rows`` with the NHS number cell emptied where the status cell says not verified.

    The FHIR reader leaves such a number out in the same way (``04``, ``05``, ``07``:
    :data:`client_sdk.normalise.nhs_number.UNTRUSTED_NHS_STATUSES`), so it feeds no key.
    ``on_unverified`` is told the line of each number left out.
    """
    for line, values in rows:
        if values[nhs].strip() and is_untrusted_status(values[status]):
            cells = list(values)
            cells[nhs] = ""
            on_unverified(line)
            yield line, cells
        else:
            yield line, values
