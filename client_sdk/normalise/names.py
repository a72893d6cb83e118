"""Names: transliterated, upper case, titles and suffixes dropped, one canonical form.

The steps, in order (docs/normalisation.md has the reasons):

1. The transliteration additions (client_sdk/data/transliteration.toml) turn apostrophe-like
   marks into ``'`` and dash-like marks into ``-``; symbols (emoji, ™, £) are dropped; then
   ``anyascii`` transliterates to ASCII (Ł→L, Ø→O, Æ→AE, ß→SS, Cyrillic and Greek to Latin),
   which NFKD alone cannot do (client_sdk.normalise.transliterate).
2. Upper case; apostrophes are deleted (O'Brien → OBRIEN); text in brackets is dropped
   (SMITH (DECEASED) → SMITH) unless nothing else is left; every other character that is
   not a letter (hyphens, dots, commas, digits) separates words (Smith-Jones → SMITH JONES).
   A full-name column is first split at spaces, so a hyphenated name stays one part.
3. Placeholders (UNKNOWN, BABY, BABY OF …, TEST, XXX) are missing values.
4. A note about another name is dropped with what follows it (SMITH NEE JONES → SMITH,
   ROBERT AKA BOB → ROBERT). Given names: leading titles dropped (MR, MRS, DR, …) and
   suffixes after the first word (JR, III, PHD, …); the first word is the given name, the
   others are middle names. Family names: trailing suffixes, personal titles and death
   notes dropped (JR, III, OBE, MRS, DECEASED, …);
   particles joined to the next word (MC DONALD → MCDONALD, DE LA CRUZ → DELACRUZ,
   SAINT JOHN → STJOHN), so spacing and punctuation around them never matter.
5. The nickname table gives each given name a key shared with its diminutives
   (BILL, WILL → WILLIAM) and with its other romanisations (MD, MOHD, MUHAMMAD → MOHAMMED).
   A diminutive of two formal names (JENNY: Jane, Jennifer) has one key, for match keys,
   and is in both groups for the ``nickname`` comparison level (:func:`nickname_groups`).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Literal

from client_sdk.normalise.defect import Defect
from client_sdk.normalise.placeholders import is_placeholder_name
from client_sdk.normalise.transliterate import to_ascii

__all__ = [
    "NICKNAMES",
    "NICKNAME_GROUPS",
    "PARTICLES",
    "SUFFIXES",
    "TITLES",
    "FullNameLayout",
    "check_family_name",
    "check_given_names",
    "check_middle_names",
    "name_words",
    "nickname_groups",
    "nickname_key",
    "normalise_family_name",
    "normalise_given_name",
    "parse_nicknames",
    "split_full_name",
]

FullNameLayout = Literal["FAMILY, GIVEN", "GIVEN FAMILY", "FAMILY GIVEN"]


def _data_text(name: str) -> str:
    return resources.files("client_sdk").joinpath(f"data/{name}").read_text("utf-8")


def _word_list(name: str) -> frozenset[str]:
    words = (line.split("#", 1)[0].strip() for line in _data_text(name).splitlines())
    return frozenset(w for w in words if w)


def parse_nicknames(text: str) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """The table's key of each name, and the keys of every group of a name in several.

    A name belongs to the group where it is written plainly (its key, for match keys);
    written ``+NAME`` in another group it belongs to that group as well (JENNY is JANE's,
    and ``+JENNY`` in JENNIFER's), for the comparison level only.
    """
    table: dict[str, str] = {}
    also: list[tuple[int, str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        key, colon, variants = content.partition(":")
        if not colon:
            raise ValueError(f"nicknames.txt line {number}: expected 'KEY: VARIANT ...'")
        for name in (key.strip(), *variants.split()):
            if name.startswith("+"):
                also.append((number, name[1:], key.strip()))
                continue
            if table.get(name, key.strip()) != key.strip():
                raise ValueError(f"nicknames.txt line {number}: {name} is in two groups")
            table[name] = key.strip()
    groups: dict[str, set[str]] = {}
    for number, name, key in also:
        if name not in table:
            raise ValueError(f"nicknames.txt line {number}: +{name} needs a group of its own")
        known = groups.setdefault(name, {table[name]})
        if key in known:
            raise ValueError(f"nicknames.txt line {number}: {name} is in {key}'s group already")
        known.add(key)
    return table, {name: tuple(sorted(keys)) for name, keys in groups.items()}


TITLES: frozenset[str] = _word_list("titles.txt")
SUFFIXES: frozenset[str] = _word_list("suffixes.txt")
PARTICLES: frozenset[str] = _word_list("particles.txt")
NICKNAMES, NICKNAME_GROUPS = parse_nicknames(_data_text("nicknames.txt"))
"""Each name's key; and, for the few names in several groups, every group's key, sorted."""
_NOT_LETTER = re.compile(r"[^A-Z]+")
# Text in brackets, or from an unclosed bracket to the end: "SMITH (DECEASED)", "JOHN [MR".
_BRACKETED = re.compile(r"\([^)]*(?:\)|$)|\[[^\]]*(?:\]|$)|\{[^}]*(?:\}|$)")
_BRACKETS = re.compile(r"[()\[\]{}]")
# A hyphen with spaces around it still binds the parts of a name ("Smith - Jones").
_SPACED_HYPHEN = re.compile(r"\s*-[\s-]*")
# Personal titles also dropped from the end of a family name ("JONES MRS").
_TRAILING_TITLES = frozenset({"MR", "MRS", "MS", "MISS", "MX", "DR"})
# Notes of a death written after a family name without brackets ("SMITH *DECEASED*").
_DEATH_NOTES = frozenset({"DECEASED", "DECD"})
# Suffixes that are never a name: dropped wherever they appear while a name remains. The
# others (JUNIOR, MA, MD, BA, …) are also names (a given name Junior, the family names Ma
# and Ba, Bangladeshi Md) and are dropped only after a name.
_GENERATIONS = frozenset({"JR", "JNR", "SR", "SNR", "II", "III", "IV"})
# Words that start a note about another name, dropped with what follows them:
# "SMITH (NEE JONES)", "SMITH FORMERLY JONES", "ROBERT AKA BOB".
_OTHER_NAME_MARKERS = frozenset({"NEE", "FORMERLY", "PREVIOUSLY", "AKA", "ALIAS", "OTHERWISE"})


def _clean(raw: str) -> str:
    """Upper-case ASCII, apostrophes deleted, bracketed text dropped, hyphens unspaced."""
    text = to_ascii(raw).upper().replace("'", "")
    if "(" in text or "[" in text or "{" in text:
        outside = _BRACKETED.sub(" ", text)
        # A name written only in brackets ("(UNKNOWN)") is read, not dropped.
        text = outside if _NOT_LETTER.sub("", outside) else _BRACKETS.sub(" ", text)
    if "-" in text:
        text = _SPACED_HYPHEN.sub("-", text)
    return text


def _words(text: str) -> list[str]:
    return _NOT_LETTER.sub(" ", text).split()


def name_words(raw: str) -> list[str]:
    """The words of a name after transliteration, upper-casing and punctuation rules.

    Args:
        raw: a name as written, e.g. ``"O’Brien-Łukasik (Mrs)"``.

    Returns:
        Upper-case ASCII words, e.g. ``["OBRIEN", "LUKASIK"]``.
    """
    return _words(_clean(raw))


def _parts(text: str) -> list[list[str]]:
    """The space-separated parts of a cleaned full name, each as its words.

    ``"ZOE SMITH-JONES"`` → ``[["ZOE"], ["SMITH", "JONES"]]``: a hyphen binds words into
    one part, so the layout never splits a double-barrelled name.
    """
    return [words for words in map(_words, text.split()) if words]


def _drop_titles(words: list[str]) -> list[str]:
    start = 0
    while start < len(words) - 1 and words[start] in TITLES:
        start += 1
    return words[start:]


def _drop_suffixes(words: list[str]) -> list[str]:
    end = len(words)
    while end > 1 and (
        words[end - 1] in SUFFIXES
        or words[end - 1] in _TRAILING_TITLES
        or words[end - 1] in _DEATH_NOTES
    ):
        end -= 1
    return words[:end]


def _drop_given_suffixes(words: list[str]) -> list[str]:
    """Suffixes after the first word, and a first word that is a generation (JR JOHN)."""
    kept = words[:1] + [w for w in words[1:] if w not in SUFFIXES]
    while len(kept) > 1 and kept[0] in _GENERATIONS:
        kept = kept[1:]
    return kept


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
    words = _drop_given_suffixes(_drop_titles(words))
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
    kept = [w for w in words if w not in SUFFIXES]
    return " ".join(kept or words)


def check_family_name(raw: str) -> str | Defect:
    """Canonical family name, or a :class:`Defect` when missing or a placeholder.

    Args:
        raw: e.g. ``"O'Brien"``, ``"Smith-Jones"``, ``"McDonald Jr"``.

    Returns:
        e.g. ``"OBRIEN"``, ``"SMITH JONES"``, ``"MCDONALD"``.
    """
    return _family(name_words(raw))


_PARTICLE_WORDS = PARTICLES | {"SAINT"}


def _is_word(part: list[str], words: frozenset[str]) -> bool:
    return len(part) == 1 and part[0] in words


def _split_given_family(parts: list[list[str]]) -> tuple[list[str], list[str]]:
    start = 0
    while start < len(parts) - 1 and _is_word(parts[start], TITLES):
        start += 1
    end = len(parts)
    # A generation or a death note is never a name; an honour or degree (MA, MD, BA) is
    # dropped only while a given name and a family name remain ("LONG MA" is Mr Ma).
    while end - start > 1 and (
        _is_word(parts[end - 1], _GENERATIONS | _DEATH_NOTES)
        or (end - start > 2 and _is_word(parts[end - 1], SUFFIXES | _TRAILING_TITLES))
    ):
        end -= 1
    parts = parts[start:end]
    if len(parts) < 2:
        return [], [w for part in parts for w in part]
    first = len(parts) - 1
    while first > 1 and _is_word(parts[first - 1], _PARTICLE_WORDS):
        first -= 1
    return [w for part in parts[:first] for w in part], [w for part in parts[first:] for w in part]


# Titles that are also family names (John Major, Peter Lord). Leading a FAMILY GIVEN value
# they are the family name unless a family name and a given name both follow them:
# "MAJOR JOHN" is John Major, "MAJOR SMITH JOHN" is Major John Smith.
_FAMILY_NAME_TITLES = frozenset(
    {"CAPTAIN", "DAME", "FATHER", "LADY", "LORD", "MAJOR", "MAST", "MASTER", "SISTER"}
)


def _split_family_given(parts: list[list[str]]) -> tuple[list[str], list[str]]:
    start = 0
    while (
        start < len(parts) - 1
        and _is_word(parts[start], TITLES)
        and (len(parts) - start > 2 or not _is_word(parts[start], _FAMILY_NAME_TITLES))
    ):
        start += 1
    end = start
    while end < len(parts) - 1 and _is_word(parts[end], _PARTICLE_WORDS):
        end += 1
    family = [w for part in parts[start : end + 1] for w in part]
    given = [w for part in parts[end + 1 :] for w in part]
    end_given = len(given)
    while end_given > 1 and given[end_given - 1] in _TRAILING_TITLES:
        end_given -= 1
    return given[:end_given], family


def _drop_other_name_parts(parts: list[list[str]]) -> list[list[str]]:
    for index in range(1, len(parts)):
        if parts[index][0] in _OTHER_NAME_MARKERS:
            return parts[:index]
    return parts


def split_full_name(
    raw: str, layout: FullNameLayout
) -> tuple[tuple[str, str | None] | Defect, str | Defect]:
    """Split a single name column into given names and family name.

    The value is split at spaces before anything else, so a hyphen binds the words of a
    double-barrelled name (``Zoë Smith-Jones``: family ``SMITH JONES``, as it would be in a
    family-name column). Text in brackets is dropped, and so are titles and suffixes
    wherever they stand.

    Args:
        raw: e.g. ``"SMITH, John Paul (Mr)"`` or ``"Dr Maria de la Cruz"``.
        layout: ``"FAMILY, GIVEN"`` (split at the first comma; without a comma the first
            part is the family name), ``"FAMILY GIVEN"`` (first part, with any particles
            before it) or ``"GIVEN FAMILY"`` (last part, with any particles before it).
            Whatever the layout, a value with a comma is read as ``FAMILY, GIVEN``.

    Returns:
        ``(given, family)`` as :func:`check_given_names` and :func:`check_family_name`
        return them.
    """
    text = _clean(raw)
    if "," in text:  # a comma always separates the family name from the given names
        family_text, _, given_text = text.partition(",")
        given_words = _words(given_text)
        end = len(given_words)
        while end > 1 and given_words[end - 1] in TITLES:
            end -= 1
        return _given(given_words[:end]), _family(_words(family_text))
    parts = _drop_other_name_parts(_parts(text))
    words = [w for part in parts for w in part]
    if not words:
        return Defect.MISSING, Defect.MISSING
    if is_placeholder_name(words):
        return Defect.PLACEHOLDER, Defect.PLACEHOLDER
    if layout == "GIVEN FAMILY":
        given_words, family_words = _split_given_family(parts)
    else:
        given_words, family_words = _split_family_given(parts)
    return _given(given_words), _family(family_words)


def nickname_key(given_name: str) -> str:
    """The nickname-table key of a canonical given name: ``BILL`` → ``WILLIAM``.

    Names not in the table are their own key.
    """
    return NICKNAMES.get(given_name, given_name)


def nickname_groups(given_name: str) -> tuple[str, ...]:
    """The keys of every nickname group a canonical given name is in, sorted.

    ``JENNY`` → ``("JANE", "JENNIFER")``: a diminutive of two formal names is in both
    groups, so it agrees with each, while the two formal names do not agree with each
    other. Most names are in one group or none: ``("WILLIAM",)`` for ``BILL``, the name
    itself for a name not in the table.
    """
    return NICKNAME_GROUPS.get(given_name) or (nickname_key(given_name),)


def normalise_given_name(raw: str) -> str | None:
    """The canonical first given name, or ``None`` when missing or a placeholder."""
    result = check_given_names(raw)
    return None if isinstance(result, Defect) else result[0]


def normalise_family_name(raw: str) -> str | None:
    """The canonical family name, or ``None`` when missing or a placeholder."""
    result = check_family_name(raw)
    return None if isinstance(result, Defect) else result
