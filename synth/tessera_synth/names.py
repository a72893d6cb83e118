"""Name and place lists (``tessera_synth/data/synth_*.txt``), and the text errors of
real systems: case, transliteration, cp1252 "best fit", keyboard and spelled-as-heard typos.
"""

from __future__ import annotations

import bisect
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Final

from tessera_synth.draws import draw

__all__ = [
    "GROUPS",
    "ORIGINS",
    "Lists",
    "Place",
    "Weighted",
    "ascii_fold",
    "mistype_name",
    "to_cp1252",
    "to_upper",
]

# ---------------------------------------------------------------------------------------
# Name and place lists
# ---------------------------------------------------------------------------------------


class Weighted:
    """A weighted choice by bisection over cumulative weights (fast, deterministic)."""

    __slots__ = ("cum", "items", "total")

    def __init__(self, items: Sequence[str], weights: Sequence[float]) -> None:
        if not items:
            raise ValueError("empty list")
        self.items = list(items)
        self.cum: list[float] = []
        running = 0.0
        for weight in weights:
            running += weight
            self.cum.append(running)
        self.total = running

    def pick(self, rng: random.Random) -> str:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.total)]


def _zipf(items: Sequence[str], offset: float) -> Weighted:
    return Weighted(items, [1.0 / (rank + offset) ** 0.9 for rank in range(1, len(items) + 1)])


def _sections(name: str) -> dict[str, list[str]]:
    text = resources.files("tessera_synth").joinpath("data", name).read_text(encoding="utf-8")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif current is not None:
            current.append(line)
    return sections


def _lines(name: str) -> list[str]:
    text = resources.files("tessera_synth").joinpath("data", name).read_text(encoding="utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


_ERAS: Final = ("old", "mid", "young")
# Origins of households: names, given and family, are drawn within one origin.
ORIGINS: Final = {
    "british": 0.92,
    "polish": 0.025,
    "south_asian_muslim": 0.015,
    "south_asian_hindu": 0.01,
    "south_asian_sikh": 0.005,
    "german": 0.007,
    "nordic": 0.004,
    "iberian": 0.006,
    "french": 0.003,
    "turkish": 0.003,
    "central_european": 0.002,
}
GROUPS: Final = tuple(ORIGINS)


@dataclass(frozen=True, slots=True)
class Place:
    district: str
    town: str
    local: bool


class Lists:
    """Every list the generator draws from, loaded once per run."""

    def __init__(self) -> None:
        self.given: dict[tuple[str, str, str], Weighted] = {}
        self.by_initial: dict[tuple[str, str, str, str], list[str]] = {}
        for sex, file in (("F", "synth_given_female.txt"), ("M", "synth_given_male.txt")):
            for key, names in _sections(file).items():
                group, era = key.split()
                eras = _ERAS if era == "any" else (era,)
                for e in eras:
                    self.given[(sex, group, e)] = _zipf(names, 1.0)
                    for name in names:
                        self.by_initial.setdefault((sex, group, e, name[0]), []).append(name)
        surnames = _sections("synth_surnames.txt")
        self.surnames = {g: _zipf(surnames[g], 5.0 if g == "british" else 2.0) for g in GROUPS}
        self.tail_roots = surnames["tail_roots"]
        self.tail_suffixes = surnames["tail_suffixes"]
        self.nicknames: dict[str, list[str]] = {}
        for line in _lines("synth_nicknames.txt"):
            formal, _, familiar = line.partition(":")
            self.nicknames[formal.strip()] = [f.strip() for f in familiar.split(",")]
        self.twin_names: dict[str, list[tuple[str, str]]] = {"F": [], "M": []}
        for line in _lines("synth_twin_names.txt"):
            sex, _, pair = line.partition(":")
            first, second = (name.strip() for name in pair.split(","))
            self.twin_names[sex.strip()].append((first, second))
        self.streets = _lines("synth_streets.txt")
        self.places = []
        for line in _lines("synth_places.txt"):
            district, town, kind = line.split("\t")
            self.places.append(Place(district, town, kind == "local"))


# ---------------------------------------------------------------------------------------
# Text helpers: case, transliteration, typos
# ---------------------------------------------------------------------------------------

# Letters that NFKD does not decompose, folded to ASCII as a keyboard user types them.
_FOLD: Final = str.maketrans(
    {pair[0]: pair[1:] for pair in "ŁL łl ØO øo ÆAE æae ŒOE œoe ßss ÞTh þth ÐD ðd ĐD đd ıi".split()}
)
# What a Windows "best fit" conversion to cp1252 does with letters cp1252 lacks.
_BEST_FIT: Final = {"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "ı": "i", "İ": "I"}


# How German and Scandinavian users type their letters on an English keyboard.
_EXPAND: Final = str.maketrans(
    {pair[0]: pair[1:] for pair in "äae öoe üue ÄAe ÖOe ÜUe øoe ØOe åaa ÅAa æae ÆAe".split()}
)


def ascii_fold(text: str, *, expand: bool = False) -> str:
    if expand:
        text = text.translate(_EXPAND)
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def to_upper(text: str) -> str:
    """Upper case as a PAS stores it: ß stays ß (Python would write SS)."""
    return text.replace("ß", "\x00").upper().replace("\x00", "ß")


def to_cp1252(text: str, *, question_marks: bool) -> tuple[str, bool]:
    """``text`` as a cp1252 export writes it; also whether anything was lost."""
    try:
        text.encode("cp1252")
        return text, False
    except UnicodeEncodeError:
        pass
    out = []
    for ch in text:
        try:
            ch.encode("cp1252")
            out.append(ch)
        except UnicodeEncodeError:
            if question_marks:
                out.append("?")
            elif ch in _BEST_FIT:
                out.append(_BEST_FIT[ch])
            else:
                base = unicodedata.normalize("NFKD", ch)[0]
                out.append(base if base.isascii() else "?")
    return "".join(out), True


# QWERTY neighbours of each letter (a slip of the finger).
_KEYBOARD: Final = dict(
    pair.split(":")
    for pair in (
        "q:wa w:qes e:wrd r:etf t:ryg y:tuh u:yij i:uok o:ipl p:ol a:qsz s:adwx d:sfe "
        "f:dgr g:fht h:gjy j:hku k:jli l:ko z:xa x:zcs c:xvd v:cbf b:vng n:bmh m:nj"
    ).split()
)
# Spelled-as-heard variants: (from, to), tried in a random order, first that applies wins.
_PHONETIC: Final = tuple(
    tuple(rule.split(">"))
    for rule in (
        "ph>f f>ph ck>k ie>y y>ie ey>y ll>l nn>n tt>t l>ll s>z z>s ou>ow ae>a th>t "
        "ai>ay ee>ea ea>ee c>k k>c ine>een son>sen sen>son mm>m"
    ).split()
)


def _recase(new: str, like: str) -> str:
    if like.isupper():
        return to_upper(new)
    return new


def mistype_name(name: str, rng: random.Random) -> str:
    """One keying or spelled-as-heard error; the first letter is kept 9 times in 10."""
    letters = [i for i, ch in enumerate(name) if ch.isalpha()]
    if len(letters) < 3:
        return name
    lower = name.lower()
    roll = rng.random()
    if roll < 0.15:
        rules = list(_PHONETIC)
        rng.shuffle(rules)
        for old, new in rules:
            at = lower.find(old, 1)
            if at > 0:
                return name[:at] + _recase(new, name[at : at + len(old)]) + name[at + len(old) :]
    start = 0 if rng.random() < 0.1 else 1
    pool = [i for i in letters if i >= start] or letters
    i = draw(rng, pool)
    ch = name[i]
    roll = rng.random()
    if roll < 0.35:
        near = _KEYBOARD.get(ch.lower(), "e")
        sub = draw(rng, near)
        return name[:i] + (sub.upper() if ch.isupper() else sub) + name[i + 1 :]
    if roll < 0.6:
        return name[:i] + name[i + 1 :]
    if roll < 0.75:
        extra = ch if rng.random() < 0.5 else draw(rng, _KEYBOARD.get(ch.lower(), "e"))
        return name[: i + 1] + (extra.upper() if ch.isupper() else extra.lower()) + name[i + 1 :]
    j = i + 1 if i + 1 < len(name) and name[i + 1].isalpha() else i - 1
    if j < 0 or not name[j].isalpha() or name[i] == name[j]:
        return name[:i] + name[i + 1 :]
    a, b = min(i, j), max(i, j)
    first, second = _like(name[b], name[a]), _like(name[a], name[b])
    return name[:a] + first + second + name[b + 1 :]


def _like(ch: str, model: str) -> str:
    """``ch`` in the case of ``model`` (a typo keeps the case of the position)."""
    return ch.upper() if model.isupper() else ch.lower()
