"""From an extract on disk to :class:`NormalisedRecord`s: read, normalise, validate, count.

:func:`iter_records` streams the file (one row in memory at a time) and yields one record
per usable row, with ``None`` for every missing, invalid or placeholder value. Rows that
cannot be used at all (no local id, a malformed row) are not yielded; they go to the
:class:`QualityCollector` as problems with their line number and reason. So does every row
after the first with the same local id (merged extracts repeat ids): it would get the same
reference as the first and replace it at the broker, losing a patient. The problem names
the line of the first. Each usable row is normalised by :mod:`client_sdk.rows`.
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack, closing
from datetime import date
from pathlib import Path

from mypy_extensions import mypyc_attr

from client_sdk.mapping import Mapping, SystemRef
from client_sdk.opt_out import SourceOptOuts
from client_sdk.quality import QualityCollector
from client_sdk.readers.blocks import RawBlock
from client_sdk.readers.columns import SEPARATOR
from client_sdk.readers.csv import read_csv, without_unverified
from client_sdk.readers.fhir import FhirFields, read_fhir
from client_sdk.record import NormalisedRecord
from client_sdk.rows import (
    SLOT_DOB,
    SLOT_FIELDS,
    SLOT_ID,
    SLOT_NHS,
    SLOT_PAYLOAD_END,
    SLOT_PAYLOAD_START,
    SLOT_REGION,
    PayloadCache,
    RowFunction,
    date_of_birth_check,
    payload_cache,
    row_function,
)
from client_sdk.tokenise import CHUNK_RECORDS
from client_sdk.tokenise_batch import RecordBlocks

__all__ = ["dates_of_birth", "iter_records", "record_blocks"]

_Plan = tuple[list[str], list[int], dict[str, str | None], tuple[tuple[int, ...], ...]]


def _csv_plan(mapping: Mapping) -> _Plan:
    """Columns to read, slot → value position, field → column, and the joined fields.

    The values read are the local id, one column per one-column field, the payload, then
    the cells of each field of several columns. The row function
    (:func:`client_sdk.rows.row_function`) adds each such field's cells, joined, after the
    values read, where its slot's position points.
    """
    assert isinstance(mapping.record.id, str)
    wanted = [mapping.record.id]
    positions = [0] + [-1] * SLOT_REGION
    several: list[tuple[int, list[str]]] = []
    for slot, name in SLOT_FIELDS:
        cells = mapping.columns_of(name)
        if mapping.joins_columns(name):
            several.append((slot, cells))
        elif cells:
            positions[slot] = len(wanted)
            wanted.append(cells[0])
    # Names without a column of their own come from the full name (or, for middle names,
    # from the extra given names).
    fallback = {
        "given_name": mapping.column_of("full_name"),
        "family_name": mapping.column_of("full_name"),
        "middle_names": mapping.column_of("given_name") or mapping.column_of("full_name"),
    }
    columns: dict[str, str | None] = {
        name: mapping.column_of(name) or fallback.get(name) for name in mapping.mapped_fields()
    }
    positions[SLOT_PAYLOAD_START] = len(wanted)
    wanted.extend(mapping.payload_columns)
    positions[SLOT_PAYLOAD_END] = len(wanted)
    joins: list[tuple[int, ...]] = []
    for _, cells in several:
        joins.append(tuple(range(len(wanted), len(wanted) + len(cells))))
        wanted.extend(cells)
    for extra, (slot, _) in enumerate(several):
        positions[slot] = len(wanted) + extra
    return wanted, positions, columns, tuple(joins)


def _fhir_fields(mapping: Mapping) -> FhirFields:
    record_id = mapping.record.id
    return FhirFields(
        id_system=record_id.system if isinstance(record_id, SystemRef) else None,
        nhs_system=mapping.fhir_system("nhs_number")
        if mapping.fhir_enabled("nhs_number")
        else None,
        other_system=mapping.fhir_system("other_id"),
        names=mapping.fhir_enabled("given_name") or mapping.fhir_enabled("family_name"),
        birth_date=mapping.fhir_enabled("date_of_birth"),
        gender=mapping.fhir_enabled("sex"),
        postcode=mapping.fhir_enabled("postcode"),
        address_line=mapping.fhir_enabled("address_line"),
        payload=mapping.payload_columns,
        locality=mapping.fhir_enabled("locality"),
        region=mapping.fhir_enabled("region"),
    )


_FHIR_ELEMENTS = {
    "nhs_number": "identifier",
    "given_name": "name.given",
    "middle_names": "name.given",
    "family_name": "name.family",
    "date_of_birth": "birthDate",
    "sex": "gender",
    "postcode": "address.postalCode",
    "address_line": "address.line",
    "locality": "address.city",
    "region": "address.state",
    "other_id": "identifier",
}


class _Source:
    """What reading an extract needs: the fields' columns, slot positions and the id column."""

    def __init__(self, mapping: Mapping) -> None:
        self.wanted: list[str] = []
        if mapping.source.format == "fhir":
            record_id = mapping.record.id
            self.id_column = "id" if isinstance(record_id, str) else record_id.system
            self.columns: dict[str, str | None] = {
                name: _FHIR_ELEMENTS[name] for name in mapping.mapped_fields()
            }
            # The reader's values: 11 fields, the payload, then locality and region.
            end = 11 + len(mapping.payload_columns)
            self.positions = [*range(12), end, end, end + 1]
            self.joins: tuple[tuple[int, ...], ...] = ()
            self.status = self.type1 = -1
        else:
            assert isinstance(mapping.record.id, str)
            self.id_column = mapping.record.id
            self.wanted, self.positions, self.columns, self.joins = _csv_plan(mapping)
            # Columns read for checks only (verification status, Type 1), after all else.
            checks = {c: len(self.wanted) + i for i, c in enumerate(mapping.check_columns)}
            self.wanted += list(checks)
            self.status = checks.get(mapping.identifiers.nhs_number_status or "", -1)
            self.type1 = (
                checks.get(mapping.opt_out.type1_column or "", -1) if mapping.opt_out else -1
            )

    def rows(
        self,
        stack: ExitStack,
        path: Path,
        mapping: Mapping,
        collector: QualityCollector,
        *,
        progress: bool,
        today: date,
    ) -> Iterator[tuple[int, Sequence[str]]]:
        on_progress = None
        if progress and sys.stderr.isatty():
            on_progress = stack.enter_context(_ProgressBar(path)).update
        # Closed with the stack: a compiled generator is not closed when it is dropped.
        rows: Generator[tuple[int, Sequence[str]], None, None]
        if mapping.source.format == "fhir":
            rows = read_fhir(
                path,
                _fhir_fields(mapping),
                encoding=mapping.source.encoding,
                on_problem=collector.reject,
                on_skip=collector.skip,
                on_progress=on_progress,
                on_position=collector.set_position,
                today=today,
                on_unverified=collector.unverified_nhs_number,
            )
        else:
            rows = read_csv(
                path,
                self.wanted,
                encoding=mapping.source.encoding,
                delimiter=mapping.source.delimiter,
                quotechar=mapping.source.quotechar,
                on_problem=collector.reject,
                on_skip=collector.skip,
                on_progress=on_progress,
            )
            if self.status >= 0:
                rows = without_unverified(
                    stack.enter_context(closing(rows)),
                    nhs=self.positions[SLOT_NHS],
                    status=self.status,
                    on_unverified=collector.unverified_nhs_number,
                )
        return stack.enter_context(closing(rows))


def iter_records(
    path: Path,
    mapping: Mapping,
    *,
    report: QualityCollector | None = None,
    progress: bool = False,
    today: date | None = None,
    opt_outs: SourceOptOuts | None = None,
) -> Iterator[NormalisedRecord]:
    """Stream the normalised records of an extract.

    Args:
        path: the CSV, NDJSON or Bundle file.
        mapping: the validated mapping.
        report: counts every value and receives every rejected row; pass one to build the
            quality report.
        progress: show a progress bar on stderr (only when stderr is a terminal).
        today: the latest acceptable date of birth (default: today).
        opt_outs: sets each record's research-restricted flag (:mod:`client_sdk.opt_out`).

    Yields:
        One :class:`NormalisedRecord` per usable row, in file order.

    Raises:
        InputError: unknown encoding, unreadable or empty file, or mapped columns missing.
    """
    collector = report if report is not None else QualityCollector()  # problems are dropped
    source = _Source(mapping)
    collector.begin(source=path.name, format=mapping.source.format, columns=source.columns)
    positions = source.positions
    today = today or date.today()
    normalise = row_function(mapping, positions, today=today, joins=source.joins)
    with ExitStack() as stack:
        rows = source.rows(stack, path, mapping, collector, progress=progress, today=today)
        id_position = positions[SLOT_ID]
        payload_start, payload_end = positions[SLOT_PAYLOAD_START], positions[SLOT_PAYLOAD_END]
        observe = collector.observe if report is not None else None
        cache, fill = payload_cache()
        first_lines: dict[str, int] = {}
        for line, values in rows:
            local_id = values[id_position].strip()
            if not local_id:
                collector.reject(line, source.id_column, "no local record id")
                continue
            first = first_lines.setdefault(local_id, line)
            if first != line:
                collector.reject(line, source.id_column, _repeated_id(first, collector))
                continue
            payload = tuple(
                [cache[v] if v in cache else fill(v) for v in values[payload_start:payload_end]]
            )
            record, outcomes = normalise(line, values, local_id, payload)
            if observe is not None:
                observe(line, outcomes, record.nhs_number, record.date_of_birth)
            if opt_outs is not None:
                record = opt_outs.mark(record, values[source.type1] if source.type1 >= 0 else None)
            yield record


def _repeated_id(first: int, collector: QualityCollector) -> str:
    """Why a row whose local id an earlier row holds is rejected (the id is not quoted)."""
    return f"duplicate local record id: the same as {collector.position} {first}"


# Pickled to the workers: a native (compiled) class would not unpickle its own state.
@mypyc_attr(native_class=False)
class _BlockNormaliser:
    """Raw rows of one block → their records and the block's quality counts.

    Picklable, so each worker builds its own normaliser (and caches) once and then
    normalises every block it is sent.
    """

    def __init__(
        self,
        mapping: Mapping,
        columns: dict[str, str | None],
        positions: list[int],
        *,
        today: date,
        max_problems: int,
        joins: tuple[tuple[int, ...], ...] = (),
        opt_outs: SourceOptOuts | None = None,
        type1: int = -1,
    ) -> None:
        self._args = (mapping, columns, positions, today, max_problems, joins, opt_outs, type1)
        self._normalise: RowFunction | None = None
        self._payload: PayloadCache | None = None

    def __getstate__(self) -> object:
        return self._args

    def __setstate__(self, state: object) -> None:
        self._args = state  # type: ignore[assignment]
        self._normalise = None
        self._payload = None

    def __call__(self, block: RawBlock) -> tuple[list[NormalisedRecord], QualityCollector]:
        mapping, columns, positions, today, max_problems, joins, opt_outs, type1 = self._args
        normalise = self._normalise
        if normalise is None:
            normalise = self._normalise = row_function(mapping, positions, today=today, joins=joins)
        if self._payload is None:
            self._payload = payload_cache()
        cache, fill = self._payload
        collector = QualityCollector(max_problems=max_problems)
        collector.begin(source="", format=mapping.source.format, columns=columns)
        observe = collector.observe
        id_position = positions[SLOT_ID]
        payload_start, payload_end = positions[SLOT_PAYLOAD_START], positions[SLOT_PAYLOAD_END]
        records: list[NormalisedRecord] = []
        append = records.append
        cells, width = block.cells, block.width
        start = 0
        for line in block.lines:
            values = cells[start : start + width]
            start += width
            payload = tuple(
                [cache[v] if v in cache else fill(v) for v in values[payload_start:payload_end]]
            )
            record, outcomes = normalise(line, values, values[id_position].strip(), payload)
            observe(line, outcomes, record.nhs_number, record.date_of_birth)
            if opt_outs is not None:
                record = opt_outs.mark(record, values[type1] if type1 >= 0 else None)
            append(record)
        return records, collector


def dates_of_birth(
    path: Path, mapping: Mapping, *, today: date | None = None
) -> Generator[str | None, None, None]:
    """Each row's date of birth (ISO, or ``None`` when missing or not valid), read alone.

    A quick pass before tokenising (the other fields are read but not normalised), for
    :func:`client_sdk.quality.assigned_birthdays`: which days the extract heaps its dates
    on must be known before the first chunk is tokenised. Rows without a local id are
    counted too: they cannot move a day's share.
    """
    source = _Source(mapping)
    position = source.positions[SLOT_DOB]
    if position < 0:
        return
    today = today or date.today()
    check = date_of_birth_check(mapping, today=today)
    seen: dict[str, str | None] = {}
    collector = QualityCollector()  # the pass reports nothing: tokenising reports it all
    collector.begin(source=path.name, format=mapping.source.format, columns=source.columns)
    with ExitStack() as stack:
        for _, values in source.rows(stack, path, mapping, collector, progress=False, today=today):
            if position < len(values):
                raw = values[position]
            else:  # a field of several columns: its cells, joined as the row function joins
                raw = SEPARATOR.join(values[i] for i in source.joins[position - len(values)])
            if raw not in seen:
                seen[raw] = check(raw)
            yield seen[raw]


def record_blocks(
    path: Path,
    mapping: Mapping,
    *,
    report: QualityCollector,
    progress: bool = False,
    today: date | None = None,
    size: int = CHUNK_RECORDS,
    opt_outs: SourceOptOuts | None = None,
) -> RecordBlocks:
    """The extract as raw blocks that tokenising workers normalise themselves.

    The same records and the same quality report as :func:`iter_records`, for
    ``client_sdk.tokenise_batch.write_batch``: this process only reads the file and sets aside
    rows with no local id; normalising and counting happen where each block is tokenised,
    so both scale with the number of workers.

    Args:
        path: the CSV, NDJSON or Bundle file.
        mapping: the validated mapping.
        report: receives every rejected row now and each block's counts once it is done.
        progress: show a progress bar on stderr (only when stderr is a terminal).
        today: the latest acceptable date of birth (default: today).
        size: rows per block (and per chunk of the batch).
        opt_outs: sets each record's research-restricted flag (:mod:`client_sdk.opt_out`).

    Returns:
        Blocks to pass to ``write_batch`` or ``tokenise_records``.

    Raises:
        InputError: as :func:`iter_records`, when the first block is read.
    """
    if size < 1:
        raise ValueError("size must be at least 1")
    source = _Source(mapping)
    report.begin(source=path.name, format=mapping.source.format, columns=source.columns)
    today = today or date.today()

    def blocks() -> Iterator[RawBlock]:
        id_position = source.positions[SLOT_ID]
        width = -1  # every row of a run has as many values: the mapped columns
        lines: list[int] = []
        cells: list[str] = []
        first_lines: dict[str, int] = {}
        with ExitStack() as stack:
            rows = source.rows(stack, path, mapping, report, progress=progress, today=today)
            for line, values in rows:
                local_id = values[id_position].strip()
                if not local_id:
                    report.reject(line, source.id_column, "no local record id")
                    continue
                first = first_lines.setdefault(local_id, line)
                if first != line:
                    report.reject(line, source.id_column, _repeated_id(first, report))
                    continue
                if width < 0:
                    width = len(values)
                lines.append(line)
                cells.extend(values)
                if len(lines) >= size:
                    yield RawBlock(width, lines, cells)
                    lines, cells = [], []
        if lines:
            yield RawBlock(width, lines, cells)

    normaliser = _BlockNormaliser(
        mapping,
        source.columns,
        source.positions,
        today=today,
        max_problems=report.max_problems,
        joins=source.joins,
        opt_outs=opt_outs,
        type1=source.type1,
    )
    return RecordBlocks(blocks(), normaliser, report.absorb)


class _ProgressBar:
    """A rich progress bar over the file's bytes, on stderr."""

    def __init__(self, path: Path) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task(f"reading {path.name}", total=path.stat().st_size)

    def __enter__(self) -> _ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, done: int) -> None:
        self._progress.update(self._task, completed=done)
