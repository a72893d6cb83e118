"""Names: transliterated, upper case, titles and suffixes dropped, one canonical form.

The steps, in order (docs/normalisation.md has the reasons):

1. The transliteration additions (client_sdk/data/transliteration.toml) turn apostrophe-like
   marks into ``'`` and dash-like marks into ``-``; then ``anyascii`` transliterates to ASCII
   (Ł→L, Ø→O, Æ→AE, ß→SS, Cyrillic and Greek to Latin), which NFKD alone cannot do.
2. Upper case; apostrophes are deleted (O'Brien → OBRIEN); every other character that is
   not a letter (hyphens, dots, commas, digits) separates words (Smith-Jones → SMITH JONES).
3. Placeholders (UNKNOWN, BABY, BABY OF …, TEST, XXX) are missing values.
4. A note about another name is dropped with what follows it (SMITH NEE JONES → SMITH,
   ROBERT AKA BOB → ROBERT). Given names: leading titles dropped (MR, MRS, DR, …); the
   first word is the given name, the others are middle names. Family names: trailing
   suffixes and personal titles dropped (JR, III, OBE, MRS, …);
   particles joined to the next word (MC DONALD → MCDONALD, DE LA CRUZ → DELACRUZ,
   SAINT JOHN → STJOHN), so spacing and punctuation around them never matter.
5. The nickname table gives each given name a key shared with its diminutives
   (BILL, WILL → WILLIAM).
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from typing import Literal

from anyascii import anyascii

from client_sdk.normalise.defect import Defect
from client_sdk.normalise.placeholders import is_placeholder_name

__all__ = [
    "NICKNAMES",
    "PARTICLES",
    "SUFFIXES",
    "TITLES",
    "FullNameLayout",
    "check_family_name",
    "check_given_names",
    "check_middle_names",
    "name_words",
    "nickname_key",
    "normalise_family_name",
    "normalise_given_name",
    "split_full_name",
]

FullNameLayout = Literal["FAMILY, GIVEN", "GIVEN FAMILY", "FAMILY GIVEN"]


def _data_text(name: str) -> str:
    return resources.files("client_sdk").joinpath(f"data/{name}").read_text("utf-8")


def _word_list(name: str) -> frozenset[str]:
    words = (line.split("#", 1)[0].strip() for line in _data_text(name).splitlines())
    return frozenset(w for w in words if w)


def _load_nicknames() -> dict[str, str]:
    table: dict[str, str] = {}
    for number, line in enumerate(_data_text("nicknames.txt").splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        key, colon, variants = content.partition(":")
        if not colon:
            raise ValueError(f"nicknames.txt line {number}: expected 'KEY: VARIANT ...'")
        for name in (key.strip(), *variants.split()):
            if table.get(name, key.strip()) != key.strip():
                raise ValueError(f"nicknames.txt line {number}: {name} is in two groups")
            table[name] = key.strip()
    return table


def _load_transliteration() -> dict[int, str]:
    data = tomllib.loads(_data_text("transliteration.toml"))
    mapping: dict[str, str] = data["map"]
    return {ord(char): replacement for char, replacement in mapping.items()}


TITLES: frozenset[str] = _word_list("titles.txt")
SUFFIXES: frozenset[str] = _word_list("suffixes.txt")
PARTICLES: frozenset[str] = _word_list("particles.txt")
NICKNAMES: dict[str, str] = _load_nicknames()
_TRANSLITERATION = _load_transliteration()
_NOT_LETTER = re.compile(r"[^A-Z]+")
# Personal titles also dropped from the end of a family name ("JONES (MRS)").
_TRAILING_TITLES = frozenset({"MR", "MRS", "MS", "MISS", "MX", "DR"})
# Words that start a note about another name, dropped with what follows them:
# "SMITH (NEE JONES)", "SMITH FORMERLY JONES", "ROBERT AKA BOB".
_OTHER_NAME_MARKERS = frozenset({"NEE", "FORMERLY", "PREVIOUSLY", "AKA", "ALIAS", "OTHERWISE"})


def name_words(raw: str) -> list[str]:
    """The words of a name after transliteration, upper-casing and punctuation rules.

    Args:
        raw: a name as written, e.g. ``"O’Brien-Łukasik"``.

    Returns:
        Upper-case ASCII words, e.g. ``["OBRIEN", "LUKASIK"]``.
    """
    text = raw.translate(_TRANSLITERATION)
    if not text.isascii():
        text = anyascii(text)
    text = text.upper().replace("'", "")
    return _NOT_LETTER.sub(" ", text).split()


def _drop_titles(words: list[str]) -> list[str]:
    start = 0
    while start < len(words) - 1 and words[start] in TITLES:
        start += 1
    return words[start:]


def _drop_suffixes(words: list[str]) -> list[str]:
    end = len(words)
    while end > 1 and (words[end - 1] in SUFFIXES or words[end - 1] in _TRAILING_TITLES):
        end -= 1
    return words[:end]


def _drop_other_names(words: list[str]) -> list[str]:
    for index in range(1, len(words)):
        if words[index] in _OTHER_NAME_MARKERS:
            return words[:index]
    return words


def _join_particles(words: list[str]) -> list[str]:
    joined: list[str] = []
    prefix = ""
    for word in words:
        if word == "SAINT":
            word = "ST"
        if word in PARTICLES:
            prefix += word
            continue
        joined.append(prefix + word)
        prefix = ""
    if prefix:
        joined.append(prefix)
    return joined


def _given(words: list[str]) -> tuple[str, str | None] | Defect:
    words = _drop_other_names(words)
    if not words:
        return Defect.MISSING
    if is_placeholder_name(words):
        return Defect.PLACEHOLDER
    words = _drop_titles(words)
    if words[0] in TITLES or is_placeholder_name(words) or is_placeholder_name(words[:1]):
        return Defect.PLACEHOLDER
    return words[0], " ".join(words[1:]) or None


def _family(words: list[str]) -> str | Defect:
    words = _drop_other_names(words)
    if not words:
        return Defect.MISSING
    if is_placeholder_name(words):
        return Defect.PLACEHOLDER
    return " ".join(_join_particles(_drop_suffixes(words)))


def check_given_names(raw: str) -> tuple[str, str | None] | Defect:
    """Split a given-name field into the first given name and the middle names.

    Args:
        raw: e.g. ``"Mr John Paul"`` or ``"Mary-Ann"``.

    Returns:
        ``(given_name, middle_names or None)``, e.g. ``("JOHN", "PAUL")``, or a
        :class:`Defect` when missing or a placeholder.
    """
    return _given(name_words(raw))


def check_middle_names(raw: str) -> str | Defect:
    """Canonical middle names (space-separated words), or a :class:`Defect`."""
    words = name_words(raw)
    if not words:
        return Defect.MISSING
    if is_placeholder_name(words):
        return Defect.PLACEHOLDER
    return " ".join(words)


def check_family_name(raw: str) -> str | Defect:
    """Canonical family name, or a :class:`Defect` when missing or a placeholder.

    Args:
        raw: e.g. ``"O'Brien"``, ``"Smith-Jones"``, ``"McDonald Jr"``.

    Returns:
        e.g. ``"OBRIEN"``, ``"SMITH JONES"``, ``"MCDONALD"``.
    """
    return _family(name_words(raw))


def _split_given_family(words: list[str]) -> tuple[list[str], list[str]]:
    words = _drop_suffixes(_drop_titles(words))
    if len(words) < 2:
        return [], words
    start = len(words) - 1
    while start > 1 and words[start - 1] in PARTICLES | {"SAINT"}:
        start -= 1
    return words[:start], words[start:]


def _split_family_given(words: list[str]) -> tuple[list[str], list[str]]:
    end = 0
    while end < len(words) - 1 and words[end] in PARTICLES | {"SAINT"}:
        end += 1
    return words[end + 1 :], words[: end + 1]


def split_full_name(
    raw: str, layout: FullNameLayout
) -> tuple[tuple[str, str | None] | Defect, str | Defect]:
    """Split a single name column into given names and family name.

    Args:
        raw: e.g. ``"SMITH, John Paul (Mr)"`` or ``"Dr Maria de la Cruz"``.
        layout: ``"FAMILY, GIVEN"`` (split at the first comma; without a comma the first
            word is the family name), ``"FAMILY GIVEN"`` (first word, with any particles
            before it) or ``"GIVEN FAMILY"`` (last word, with any particles before it).
            Whatever the layout, a value with a comma is read as ``FAMILY, GIVEN``.

    Returns:
        ``(given, family)`` as :func:`check_given_names` and :func:`check_family_name`
        return them.
    """
    if "," in raw:  # a comma always separates the family name from the given names
        family_raw, _, given_raw = raw.partition(",")
        given_words = name_words(given_raw)
        end = len(given_words)
        while end > 1 and given_words[end - 1] in TITLES:
            end -= 1
        return _given(given_words[:end]), _family(name_words(family_raw))
    words = _drop_other_names(name_words(raw))
    if not words:
        return Defect.MISSING, Defect.MISSING
    if is_placeholder_name(words):
        return Defect.PLACEHOLDER, Defect.PLACEHOLDER
    if layout == "GIVEN FAMILY":
        given_words, family_words = _split_given_family(words)
    else:
        given_words, family_words = _split_family_given(_drop_titles(words))
    return _given(given_words), _family(family_words)


def nickname_key(given_name: str) -> str:
    """The nickname-table key of a canonical given name: ``BILL`` → ``WILLIAM``.

    Names not in the table are their own key.
    """
    return NICKNAMES.get(given_name, given_name)


def normalise_given_name(raw: str) -> str | None:
    """The canonical first given name, or ``None`` when missing or a placeholder."""
    result = check_given_names(raw)
    return None if isinstance(result, Defect) else result[0]


def normalise_family_name(raw: str) -> str | None:
    """The canonical family name, or ``None`` when missing or a placeholder."""
    result = check_family_name(raw)
    return None if isinstance(result, Defect) else result
