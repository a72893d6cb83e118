"""Fields spread over several columns: their cells, read as one field's raw text.

The pipeline joins a field's cells with :data:`SEPARATOR` (one string per row, so a field's
normaliser can memoise it like a single cell), and these functions turn that string into
the text the field's one-column normaliser reads:

- names (given, middle, family): the cells in order, joined with a space. Empty cells and
  database null markers (``NULL``, ``N/A``) are skipped, and so is a cell after the first
  that is on its own a placeholder name (``NOT KNOWN``): an unknown middle name must not
  become a word of the name.
- address line: not joined here; each line is cleaned, then the lines joined
  (``client_sdk.normalise.text.check_address_lines``).
- postcode in several cells (outward, inward): the cells with a value, joined with a space.
- postcode in free text: the last UK postcode-shaped sequence of the text (``BA1 1AA``,
  ``ba11aa``), or nothing. In several address cells, the cells are searched last to first
  and the first that holds one gives it (:func:`find_postcode_in_cells`).
"""

from __future__ import annotations

import re

from client_sdk.normalise.names import name_words
from client_sdk.normalise.placeholders import is_placeholder_name, payload_value

__all__ = [
    "SEPARATOR",
    "find_postcode",
    "find_postcode_in_cells",
    "joined_text",
    "name_text",
]

SEPARATOR = "\x1f"
"""Between a field's cells (ASCII unit separator: not found in exported text)."""

# Outward code (letters, a digit, maybe a digit or letter), optional spaces, inward code
# (a digit, two letters), not inside a longer word. check_postcode then applies the
# Royal Mail format.
_POSTCODE_SHAPE = re.compile(
    r"(?<![A-Z0-9])([A-Z]{1,2}[0-9][A-Z0-9]?)[ \t]*([0-9][A-Z]{2})(?![A-Z0-9])"
)


def _values(raw: str) -> list[str]:
    """The field's cells that hold a value: stripped, empty cells and null markers left out."""
    return [value for cell in raw.split(SEPARATOR) if (value := payload_value(cell)) is not None]


def _no_value(raw: str) -> str:
    """What a field with no value in any cell reads as: its first null marker, or ``""``.

    A null marker is a placeholder to the normaliser, so the quality report counts the
    field as it would count one such cell.
    """
    return next((stripped for cell in raw.split(SEPARATOR) if (stripped := cell.strip())), "")


def name_text(raw: str) -> str:
    """A name field's cells as one name: in order, joined with a space.

    Args:
        raw: the cells joined with :data:`SEPARATOR`, e.g. ``"John\\x1fPaul"``.

    Returns:
        e.g. ``"John Paul"``; with no value in any cell, the first null marker (a
        placeholder to the normaliser) or ``""``.
    """
    values = _values(raw)
    if len(values) < 2:
        return values[0] if values else _no_value(raw)
    kept = values[:1]
    kept.extend(v for v in values[1:] if not is_placeholder_name(name_words(v)))
    return " ".join(kept)


def joined_text(raw: str) -> str:
    """The cells with a value, joined with a space (a postcode's outward and inward codes)."""
    return " ".join(_values(raw)) or _no_value(raw)


def find_postcode(text: str) -> str:
    """The last UK postcode-shaped sequence in free text, or ``""`` when there is none.

    Args:
        text: e.g. ``"12 High St, Bath BA1 1AA"``.

    Returns:
        e.g. ``"BA1 1AA"`` (upper case; the postcode normaliser checks it).
    """
    found = _POSTCODE_SHAPE.findall(text.upper())
    if not found:
        return ""
    outward, inward = found[-1]
    return f"{outward} {inward}"


def find_postcode_in_cells(raw: str) -> str:
    """The postcode of an address in several cells: searched from the last cell back.

    Args:
        raw: the cells joined with :data:`SEPARATOR`, e.g. ``"12 High St\x1fBath\x1fBA1 1AA"``
            (one cell is searched like :func:`find_postcode`).

    Returns:
        The last postcode-shaped sequence of the last cell that holds one, or ``""``.
    """
    for cell in reversed(raw.split(SEPARATOR)):
        found = find_postcode(cell)
        if found:
            return found
    return ""
