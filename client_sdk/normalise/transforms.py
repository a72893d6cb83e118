"""Match-key transforms: pure functions from one canonical value to a coarser one.

Each takes a canonical value (see :class:`client_sdk.record.NormalisedRecord`) and returns
the transformed value, or ``None`` when nothing is left to tokenise (``None`` is never
tokenised). The exact outputs are part of the token format (docs/token-format.md):

===========  ===============================  ==================================
transform    applies to                       output
===========  ===============================  ==================================
initial      names                            first letter: ``"WILLIAM"`` → ``"W"``
soundex      names                            American Soundex of the letters
                                              (spaces removed): ``"R163"``
nysiis       names                            NYSIIS code, spaces removed, full
                                              length: ``"JANSAN"``
metaphone    names                            Metaphone code, spaces removed
nickname     names                            the nickname table's key:
                                              ``"BILL"`` → ``"WILLIAM"`` (a name
                                              not in the table is itself)
year         date_of_birth                    ``"1984"``
assigned_    date_of_birth                    ``"1984"``, as ``year``: the only
year                                          year value of a date on a day the
                                              extract assigns to an unknown
                                              birthday, which then has no ``year``
                                              (client_sdk.evidence)
swap         date_of_birth                    day and month as an unordered pair:
                                              the smaller first, so ``1984-07-03``
                                              and ``1984-03-07`` give ``"1984-03-07"``
district     postcode                         outward code: ``"BA1"`` (a non-UK
                                              postcode, with no space, whole)
sector       postcode                         outward code, space, first inward
                                              character: ``"BA1 1"`` (non-UK: whole)
prefix2      postcode (non-UK)                first 2 characters: ``"2000"`` →
                                              ``"20"``; a UK postcode gives none
prefix3      postcode (non-UK)                first 3 characters: ``"D02X285"`` →
                                              ``"D02"``; a UK postcode gives none
===========  ===============================  ==================================

Phonetic codes come from ``jellyfish`` and are cached: names repeat, so most calls are a
dictionary hit.

*Comparison levels* (``LEVEL_FUNCTIONS``) are the probabilistic stage's counterpart: each
maps a canonical value to the values of one level of a comparison, a tuple because a level
may carry several (docs/token-format.md#comparison-tokens):

===========  ===============================  ==================================
level        applies to                       values
===========  ===============================  ==================================
exact        any field                        the value itself
nickname     names                            the key of each nickname group the
                                              name is in, sorted (one for most
                                              names; JENNY: ``("JANE",
                                              "JENNIFER")``)
soundex,     names                            the transform of the same name
nysiis,                                       (one value)
metaphone,
initial
part         names                            each distinct space-separated part,
                                              sorted: ``"SMITH JONES"`` →
                                              ``("JONES", "SMITH")``
joined       names                            the value without its spaces:
                                              ``"SMITH JONES"`` → ``("SMITHJONES",)``
                                              (hyphens are spaces by then): two
                                              names share it iff they differ only
                                              in their spaces
swap         date_of_birth                    as the ``swap`` transform
one_digit    date_of_birth, nhs_number,       one variant per digit position, that
             other_id, postcode               digit replaced by ``*``: two values
                                              share a variant iff they differ in at
                                              most one digit (same length)
transpose    date_of_birth, other_id,         one variant per pair of adjacent,
             postcode                         different digits, written ``*`` then
                                              the pair in ascending order: two values
                                              share a variant iff one is the other
                                              with two adjacent digits swapped
one_word     address_line                     one variant per word of a value of two
                                              or more words, that word replaced by
                                              ``*``, and the value without its
                                              spaces: two values share a variant iff
                                              they differ in at most one word or only
                                              in their spaces
one_edit     names                            the value and each distinct value with
                                              one character deleted: two names one
                                              substitution, insertion, deletion or
                                              adjacent transposition apart share one
year_month   date_of_birth                    ``"1984-07"``
year         date_of_birth                    ``"1984"``
assigned_    date_of_birth                    ``"1984"``, as ``year``: the only
year                                          year value of a date on a day the
                                              extract assigns to an unknown
                                              birthday, which then has no ``year``
                                              (client_sdk.evidence)
sector,      postcode                         as the transforms of the same name
district
===========  ===============================  ==================================

*Two-field levels* (``PAIR_LEVEL_FUNCTIONS``) read the comparison's field and its
``with_field`` (the given and the family name): ``either_order`` is the two values as an
unordered pair, ``either_order_soundex`` their Soundex codes as an unordered pair, so
that names entered in each other's fields agree there; ``any_given`` reads the given name
with the middle names: each distinct name among them, so that a record of someone known
by a middle name (AMINA) agrees with one holding it as a middle name (MEGAN AMINA);
``joined_middle`` reads them too: the given name, and the given name joined to the first
middle name, so that a name written as two words in one record (ANNE MARIE, ANNE-MARIE,
RO NAN: the normaliser makes the second word a middle name) agrees with the same name
written as one (ANNEMARIE, RONAN) in the other.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import jellyfish

from client_sdk.normalise.names import nickname_groups, nickname_key
from client_sdk.normalise.postcode import postcode_district, postcode_sector

__all__ = [
    "LEVEL_FUNCTIONS",
    "PAIR_LEVEL_FUNCTIONS",
    "TRANSFORM_FUNCTIONS",
    "any_given",
    "day_month_unordered",
    "either_order",
    "either_order_soundex",
    "initial",
    "joined",
    "joined_middle",
    "metaphone",
    "name_parts",
    "nickname",
    "nysiis",
    "one_digit_variants",
    "one_edit_variants",
    "one_word_variants",
    "postcode_prefix2",
    "postcode_prefix3",
    "soundex",
    "transpose_variants",
    "year",
    "year_month",
]

_CACHE = 1 << 16
_MAX_DIGIT_VARIANTS = 24


def _letters(name: str) -> str:
    return "".join(ch for ch in name if "A" <= ch <= "Z")


def initial(name: str) -> str | None:
    """First letter of a canonical name."""
    for ch in name:
        if "A" <= ch <= "Z":
            return ch
    return None


@lru_cache(maxsize=_CACHE)
def soundex(name: str) -> str | None:
    """American Soundex (4 characters) of a canonical name's letters."""
    letters = _letters(name)
    return str(jellyfish.soundex(letters)) if letters else None


@lru_cache(maxsize=_CACHE)
def nysiis(name: str) -> str | None:
    """NYSIIS code (not truncated) of a canonical name's letters."""
    letters = _letters(name)
    return (str(jellyfish.nysiis(letters)) or None) if letters else None


@lru_cache(maxsize=_CACHE)
def metaphone(name: str) -> str | None:
    """Metaphone code of a canonical name's letters."""
    letters = _letters(name)
    return (str(jellyfish.metaphone(letters)) or None) if letters else None


def nickname(name: str) -> str | None:
    """The nickname table's key of a canonical name (the name itself when not in the table).

    ``given_name:nickname`` is ``given_name_key``; on the family name it lets a key compare
    names that were entered in the wrong fields (``{given_name:nickname,
    family_name:nickname}``), where a nickname can sit in the family name field.
    """
    return nickname_key(name)


def year(date: str) -> str | None:
    """Year of an ISO date, or of a partial one (``YYYY``, ``YYYY-MM``).

    A partial date reaches only the evidence (blocking keys' ``year`` and the comparison
    levels, :mod:`client_sdk.evidence`), never a match key: ``date_of_birth`` is always a
    full date.
    """
    return date[:4] if len(date) in (4, 7, 10) else None


def day_month_unordered(date: str) -> str | None:
    """An ISO date with day and month ordered smaller first, so a swap gives the same value."""
    if len(date) != 10:
        return None
    month, day = date[5:7], date[8:10]
    if day < month:
        return f"{date[:4]}-{day}-{month}"
    return date


# Places and non-UK postcodes (issue 17) --------------------------------------------------


def _postcode_prefix(canonical: str, size: int) -> str | None:
    """The first ``size`` characters of a canonical non-UK postcode.

    A canonical UK postcode (it has a space: ``BA1 1AA``) gives ``None``: its prefixes cut
    across districts (``B1 1AA`` and ``B11 1AA`` share ``B11``), and its ``district`` and
    ``sector`` are the areas to use. A postcode shorter than ``size`` gives ``None``.
    """
    if " " in canonical or len(canonical) < size:
        return None
    return canonical[:size]


def postcode_prefix2(canonical: str) -> str | None:
    """First 2 characters of a non-UK postcode (``"2000"`` → ``"20"``), ``None`` for a UK one."""
    return _postcode_prefix(canonical, 2)


def postcode_prefix3(canonical: str) -> str | None:
    """First 3 characters of a non-UK postcode (``"D02X285"`` → ``"D02"``), ``None`` for UK."""
    return _postcode_prefix(canonical, 3)


# -------------------------------------------------------------------------------------------


TRANSFORM_FUNCTIONS: dict[str, Callable[[str], str | None]] = {
    "initial": initial,
    "soundex": soundex,
    "nysiis": nysiis,
    "metaphone": metaphone,
    "nickname": nickname,
    "year": year,
    "swap": day_month_unordered,
    "district": postcode_district,
    "sector": postcode_sector,
    "prefix2": postcode_prefix2,
    "prefix3": postcode_prefix3,
}
"""Transform name in a linkage spec → function."""


def name_parts(name: str) -> tuple[str, ...]:
    """Each distinct space-separated part of a canonical name, sorted (one part: itself)."""
    return tuple(sorted(set(name.split())))


def joined(name: str) -> tuple[str, ...]:
    """A canonical name without its spaces: ``"SMITH JONES"`` → ``("SMITHJONES",)``.

    Two names share it exactly when they are the same letters with spaces put in or taken
    out: a double-barrelled name written with a space, a hyphen (a space once normalised)
    or as one word, or a stray space typed inside a name (``SMI TH``). Unlike the
    ``one_word`` variants it never agrees on one word of two (``SMITH JONES`` and ``SMITH
    BROWN`` share ``SMITH *``), and unlike ``one_edit`` it has no length limit and takes
    any number of spaces.
    """
    return (name.replace(" ", ""),)


def one_digit_variants(value: str) -> tuple[str, ...]:
    """The value once per digit position with that digit masked as ``*``.

    Two values of one length share a variant exactly when they differ in at most one
    digit and nowhere else (Hamming distance ≤ 1 over the digits). A value longer than 24
    characters gets none (the chunk carries at most 255 tokens per level and record).
    """
    if len(value) > _MAX_DIGIT_VARIANTS:
        return ()
    return tuple(value[:i] + "*" + value[i + 1 :] for i, ch in enumerate(value) if ch.isdigit())


def transpose_variants(value: str) -> tuple[str, ...]:
    """The value once per pair of adjacent, different digits, the pair sorted after a ``*``.

    ``"2164"`` → ``("*1264", "2*164", "21*46")``: the variant of position ``i`` is
    ``value[:i] + "*" +`` the two digits in ascending order ``+ value[i + 2:]``, so two
    values share a variant exactly when one is the other with two adjacent digits swapped
    (2164 and 2614; 1984 and 1948). Equal digits give no variant (swapping them changes
    nothing), nor does a value longer than 24 characters.
    """
    if len(value) > _MAX_DIGIT_VARIANTS:
        return ()
    out = []
    for i in range(len(value) - 1):
        a, b = value[i], value[i + 1]
        if a != b and a.isdigit() and b.isdigit():
            out.append(value[:i] + "*" + min(a, b) + max(a, b) + value[i + 2 :])
    return tuple(out)


def one_word_variants(value: str) -> tuple[str, ...]:
    """The value once per word with that word replaced by ``*`` (two words at least),
    then the value with its spaces removed.

    Two values share a variant exactly when they have the same number of words and differ
    in at most one (``8 STANLEY STREET`` and ``8 STANELY STREET``, or ``18 STANLEY
    STREET``), or are the same characters with spaces put in or taken out (``37 KELLEWAY
    AVENUE`` and ``37 KELLEWAYAVENUE``, ``JALANGA C RESCENT``): a typist's slip that
    changes the word count, common in free-text addresses (FEBRL's duplicates), which
    the word variants cannot see. A one-word value gets no word variant (it would be
    every one-word value), only itself; a value of more than 24 words gets none.
    """
    words = value.split(" ")
    if len(words) > _MAX_DIGIT_VARIANTS:
        return ()
    # A word variant holds a "*" and a space, the joined value neither: they never meet.
    spaceless = "".join(words)
    if len(words) < 2:
        return (spaceless,)
    return (
        *(" ".join((*words[:i], "*", *words[i + 1 :])) for i in range(len(words))),
        spaceless,
    )


def one_edit_variants(name: str) -> tuple[str, ...]:
    """The name and each distinct name with one character deleted (symmetric deletion).

    Two names share a value when they are one edit apart: a substitution or an adjacent
    transposition (both lose the same two-character window's differing character: ``MIA``
    and ``MXA`` share ``MA``; ``OSCAR`` and ``OSACR`` share ``OSCR``), an insertion or a
    deletion (the shorter name is one of the longer's values). Some pairs two edits apart
    share one too (one character deleted in each, at different places: ``ABCD`` and
    ``ACDE`` share ``ACD``). A one-character deletion that leaves nothing is no value (it
    would join every one-letter name), and a name longer than 24 characters gets only
    itself (the chunk carries at most 255 tokens per level and record).
    """
    if len(name) > _MAX_DIGIT_VARIANTS:
        return (name,)
    out = [name]
    previous = ""
    for i in range(len(name)):
        if name[i] == previous:  # deleting either of two equal neighbours gives one value
            continue
        previous = name[i]
        variant = name[:i] + name[i + 1 :]
        if variant:
            out.append(variant)
    return tuple(out)


def either_order(first: str, second: str) -> tuple[str, ...]:
    """Two names as an unordered pair: the two sorted, joined by ``|``.

    ``("GABRIELLE", "LANGER")`` and ``("LANGER", "GABRIELLE")`` both give
    ``"GABRIELLE|LANGER"`` (canonical names never hold ``|``); none without the second.
    """
    return ("|".join(sorted((first, second))),) if second else ()


def either_order_soundex(first: str, second: str) -> tuple[str, ...]:
    """The two names' Soundex codes as an unordered pair (none if either has no letters)."""
    a, b = soundex(first), soundex(second) if second else None
    return ("|".join(sorted((a, b))),) if a and b else ()


def any_given(given: str, middle: str) -> tuple[str, ...]:
    """Each distinct name among the given name and the middle names, sorted.

    Two records share one when they have a name in common among their given and middle
    names: someone known by a middle name, ``("AMINA", "")`` → ``("AMINA",)`` against
    ``("MEGAN", "AMINA")`` → ``("AMINA", "MEGAN")``; or two records with one middle name
    and different given names. A record without middle names still has its given name.
    """
    return tuple(sorted({given, *middle.split()}))


def joined_middle(given: str, middle: str) -> tuple[str, ...]:
    """The given name, then the given name joined to the first middle name (if any).

    A given-name field written ``ANNE MARIE`` or ``ANNE-MARIE`` is given name ``ANNE``
    and middle name ``MARIE`` once normalised (the first word is the given name), and
    ``RO NAN`` (a stray space) is ``RO`` and ``NAN``: ``("ANNE", "MARIE")`` →
    ``("ANNE", "ANNEMARIE")`` shares ``ANNEMARIE`` with ``("ANNEMARIE", "")`` →
    ``("ANNEMARIE",)``. Two records share a value when their given names are the same
    (``exact`` agrees there first), when one's given name is the other's given and first
    middle name written as one word, or when their given and first middle names are the
    same letters split at another place (``JO ANNE``, ``JOAN NE``). Spaces are taken out
    of the given name, which normally has none (the normaliser keeps its first word).
    """
    name = given.replace(" ", "")
    first = middle.split(" ", 1)[0]
    return (name, name + first) if first else (name,)


def year_month(date: str) -> str | None:
    """Year and month of an ISO date, or of a partial one with its month: ``"1984-07"``."""
    return date[:7] if len(date) in (7, 10) else None


def _single(function: Callable[[str], str | None]) -> Callable[[str], tuple[str, ...]]:
    def level(value: str) -> tuple[str, ...]:
        out = function(value)
        return (out,) if out else ()

    return level


def _exact(value: str) -> tuple[str, ...]:
    return (value,)


LEVEL_FUNCTIONS: dict[str, Callable[[str], tuple[str, ...]]] = {
    "exact": _exact,
    "nickname": nickname_groups,
    "soundex": _single(soundex),
    "nysiis": _single(nysiis),
    "metaphone": _single(metaphone),
    "initial": _single(initial),
    "part": name_parts,
    "joined": joined,
    "swap": _single(day_month_unordered),
    "one_digit": one_digit_variants,
    "transpose": transpose_variants,
    "one_word": one_word_variants,
    "one_edit": one_edit_variants,
    "year_month": _single(year_month),
    "year": _single(year),
    "assigned_year": _single(year),
    "sector": _single(postcode_sector),
    "district": _single(postcode_district),
}
"""Comparison level in a linkage spec → function (value → the level's values)."""

PAIR_LEVEL_FUNCTIONS: dict[str, Callable[[str, str], tuple[str, ...]]] = {
    "either_order": either_order,
    "either_order_soundex": either_order_soundex,
    "any_given": any_given,
    "joined_middle": joined_middle,
}
"""Two-field comparison level → function (the field's value, the ``with_field``'s value →
the level's values, ``""`` for a missing second value)."""
