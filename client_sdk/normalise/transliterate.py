"""Text to upper-case-ready ASCII: the transliteration table, symbols dropped, anyascii.

Shared by names, address lines and other ids (docs/normalisation.md, step 1 of names):

1. The additions in client_sdk/data/transliteration.toml turn apostrophe-like marks into
   ``'`` and dash-like marks into ``-`` (some of them, ´ and −, are symbols to Unicode).
2. Every other symbol is replaced by a space: Unicode categories ``Sm``, ``Sc``, ``Sk``,
   ``So`` (emoji, ™, ©, £, ∑, skin-tone modifiers), surrogates (``Cs``), private-use
   (``Co``) and unassigned (``Cn``) code points. anyascii would otherwise turn them into
   words (😀 → ``:grinning:``, £ → ``GBP``, ™ → ``TM``) that become part of a name.
3. ``anyascii`` transliterates the rest (Ł→L, Ø→O, Æ→AE, ß→SS, Cyrillic, Greek, …).

ASCII text is returned unchanged: its symbols (``+ < = > ^ | ~ $``) are separators anyway.
"""

from __future__ import annotations

import tomllib
import unicodedata
from importlib import resources

from anyascii import anyascii

__all__ = ["drop_symbols", "to_ascii"]


def _load_table() -> dict[int, str]:
    text = resources.files("client_sdk").joinpath("data/transliteration.toml").read_text("utf-8")
    mapping: dict[str, str] = tomllib.loads(text)["map"]
    return {ord(char): replacement for char, replacement in mapping.items()}


_TABLE = _load_table()
_DROPPED_OTHER = frozenset({"Cs", "Co", "Cn"})


def drop_symbols(text: str) -> str:
    """Replace every non-ASCII symbol, surrogate, private-use or unassigned character by a space.

    Args:
        text: any text, e.g. ``"Zoë 😀"``.

    Returns:
        e.g. ``"Zoë  "``; ASCII text unchanged.
    """
    if text.isascii():
        return text
    category = unicodedata.category
    return "".join(
        " "
        if not char.isascii() and ((c := category(char))[0] == "S" or c in _DROPPED_OTHER)
        else char
        for char in text
    )


def to_ascii(raw: str) -> str:
    """The table's additions, symbols dropped, then anyascii's transliteration.

    Args:
        raw: e.g. ``"O’Brien–Łukasik ™"``.

    Returns:
        ASCII text, case kept, e.g. ``"O'Brien-Lukasik  "``.
    """
    text = raw.translate(_TABLE)
    if text.isascii():
        return text
    return anyascii(drop_symbols(text))
