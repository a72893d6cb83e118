"""A block of raw rows, held flat: what the reading process hands a tokenising worker.

``tessera-sdk tokenise`` reads the extract in one process and sends blocks of rows to the
workers, which normalise and tokenise them. Reading is the part that cannot be shared out,
so a block is shaped for that process's cost, not for convenience:

- **Flat.** The rows' line numbers go in one list and every row's values, one after the
  other, in another. A list of ``(line, values)`` tuples would add two tuples per row that
  the cycle collector scans again and again while a block waits for a worker: about 1 µs
  a record in the reading process at a million rows (docs/performance-history.md, sixth
  pass).
- **One string on the wire.** Pickled, the values are joined with NUL characters, which
  no value holds (both readers reject a row with one: ``NUL_REASON``), so a block crosses
  to a worker as a single string rather than one pickled object per value, and the
  worker splits it in C.

A block never leaves the machine: it holds raw identifiers, like every row the readers
yield.
"""

from __future__ import annotations

__all__ = ["RawBlock"]

_SEPARATOR = "\x00"


class RawBlock:
    """Rows of ``width`` values each, with the line each starts on, in file order.

    Row ``i`` is ``cells[i * width:(i + 1) * width]`` and starts on ``lines[i]``.
    """

    def __init__(self, width: int, lines: list[int], cells: list[str]) -> None:
        if len(cells) != width * len(lines):
            raise ValueError(f"{len(cells)} values are not {len(lines)} rows of {width}")
        self.width = width
        self.lines = lines
        self.cells = cells

    def __len__(self) -> int:
        return len(self.lines)

    def __getstate__(self) -> tuple[int, list[int], str]:
        text = _SEPARATOR.join(self.cells)
        if self.cells and text.count(_SEPARATOR) != len(self.cells) - 1:
            raise ValueError("a value holds a NUL character: the readers must reject it")
        return self.width, self.lines, text

    def __setstate__(self, state: tuple[int, list[int], str]) -> None:
        self.width, self.lines, text = state
        self.cells = text.split(_SEPARATOR) if self.lines else []
