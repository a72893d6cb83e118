"""NHS numbers, postcodes, addresses and dates of birth: drawn in the valid shape but at
random, and mistyped the way real extracts mistype them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

from tessera_synth.draws import draw, draw_below, draw_between
from tessera_synth.names import Lists, Place

__all__ = [
    "Address",
    "NhsBook",
    "PostcodeBook",
    "mistype_dob",
    "mistype_nhs",
    "mistype_postcode",
    "nhs_valid",
    "swap_day_month",
]

# ---------------------------------------------------------------------------------------
# NHS numbers, postcodes, dates
# ---------------------------------------------------------------------------------------

_NHS_WEIGHTS: Final = (10, 9, 8, 7, 6, 5, 4, 3, 2)


def _nhs_check(nine: str) -> int:
    total = 0
    for d, w in zip(nine, _NHS_WEIGHTS, strict=True):
        total += (ord(d) - 48) * w
    check = 11 - total % 11
    return 0 if check == 11 else check


def nhs_valid(number: str) -> bool:
    if len(number) != 10 or not number.isdigit():
        return False
    check = _nhs_check(number[:9])
    return check != 10 and check == int(number[9])


class NhsBook:
    """Unique valid NHS numbers in the 900-999 million block.

    Numbers issued to patients in England and Wales start with 4, 6 or 7; the 9 block is
    where the NHS's own examples (943 476 5919) and its reserved test range (999…) live,
    so that a synthetic number does not name a real patient's record.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def new(self) -> str:
        rng = self.rng
        while True:
            nine = f"{900 + int(rng.random() * 100)}{int(rng.random() * 1_000_000):06d}"
            check = _nhs_check(nine)
            if check == 10:
                continue
            number = nine + str(check)
            if number in self.used or len(set(nine)) == 1 or number == "9876543210":
                continue
            self.used.add(number)
            return number


def mistype_nhs(number: str, rng: random.Random) -> str:
    digits = list(number)
    roll = rng.random()
    if roll < 0.45:
        for _ in range(20):
            i = draw_below(rng, 9)
            if digits[i] != digits[i + 1]:
                digits[i], digits[i + 1] = digits[i + 1], digits[i]
                return "".join(digits)
    count = 2 if roll > 0.9 else 1
    for i in rng.sample(range(10), count):
        digits[i] = draw(rng, [d for d in "0123456789" if d != digits[i]])
    return "".join(digits)


_INWARD_LETTERS: Final = "ABDEFGHJLNPQRSTUWXYZ"
_POSTCODE_DRAWS: Final = 64  # misses before a full district widens or reuses a postcode


@dataclass(frozen=True, slots=True)
class Address:
    line1: str
    town: str
    postcode: str


class PostcodeBook:
    """Postcode units per town, each holding a street of 6 to 30 addresses."""

    def __init__(self, rng: random.Random, lists: Lists) -> None:
        self.rng = rng
        self.lists = lists
        self.used: set[str] = set()
        self.towns: dict[str, list[Place]] = {}
        for place in lists.places:
            self.towns.setdefault(place.town, []).append(place)
        self.local_towns = sorted({p.town for p in lists.places if p.local})
        self.outside_places = [p for p in lists.places if not p.local]
        # Per town: open units [postcode, street, next house number, capacity].
        self.open: dict[str, list[list[Any]]] = {}
        self.sectors: dict[str, list[int]] = {}
        self.units: dict[str, list[str]] = {}  # per district, the postcodes handed out

    def _new_unit(self, place: Place) -> list[Any]:
        postcode = self._new_postcode(place.district)
        street = draw(self.rng, self.lists.streets)
        return [
            postcode,
            street,
            draw_between(self.rng, 1, 3),
            draw_between(self.rng, 6, 30),
            place.town,
        ]

    def _new_postcode(self, district: str) -> str:
        """An unused postcode of ``district``; the district widens, then reuses, when full.

        Draws are random, so a district whose sectors fill up takes ever more draws: after
        :data:`_POSTCODE_DRAWS` misses a sector is added (up to all ten), and once every
        one of the district's 4,000 units is taken a new street shares a used unit, as
        real streets do. So any population size finishes.
        """
        rng = self.rng
        sectors = self.sectors.get(district)
        if sectors is None:
            sectors = sorted(rng.sample(range(10), draw_between(rng, 2, 6)))
            self.sectors[district] = sectors
        units = self.units.setdefault(district, [])
        while True:
            for _ in range(_POSTCODE_DRAWS):
                inward = (
                    f"{draw(rng, sectors)}{draw(rng, _INWARD_LETTERS)}{draw(rng, _INWARD_LETTERS)}"
                )
                postcode = f"{district} {inward}"
                if postcode not in self.used:
                    self.used.add(postcode)
                    units.append(postcode)
                    return postcode
            unused = [d for d in range(10) if d not in sectors]
            if not unused:
                return draw(rng, units)
            sectors.append(draw(rng, unused))
            sectors.sort()

    def address(self, town: str) -> Address:
        rng = self.rng
        units = self.open.setdefault(town, [])
        if len(units) < 4 or rng.random() < 0.05:
            units.append(self._new_unit(draw(rng, self.towns[town])))
        unit = draw(rng, units)
        number = unit[2]
        unit[2] += draw(rng, (1, 1, 2, 2, 2, 3))
        unit[3] -= 1
        if unit[3] <= 0:
            units.remove(unit)
        roll = rng.random()
        if roll < 0.08:
            line1 = f"Flat {draw_between(rng, 1, 12)}, {number} {unit[1]}"
        elif roll < 0.11:
            line1 = f"{draw(rng, _HOUSE_NAMES)}, {unit[1]}"
        else:
            line1 = f"{number} {unit[1]}"
        return Address(line1, unit[4], unit[0])

    def outside(self) -> Address:
        rng = self.rng
        place = draw(rng, self.outside_places)
        unit = self._new_unit(place)
        return Address(f"{draw_between(rng, 1, 200)} {unit[1]}", place.town, unit[0])


_HOUSE_NAMES: Final = (
    "Rose Cottage",
    "The Old Rectory",
    "Orchard House",
    "Ivy Cottage",
    "The Willows",
    "Meadow View",
    "Church Farm",
    "The Old School",
    "Hillside",
    "Primrose Cottage",
)


def mistype_postcode(postcode: str, rng: random.Random) -> str:
    outward, inward = postcode.split(" ")
    if rng.random() < 0.3 and inward[1] != inward[2]:
        return f"{outward} {inward[0]}{inward[2]}{inward[1]}"
    i = draw_below(rng, 3)
    if i == 0:
        new = draw(rng, [d for d in "0123456789" if d != inward[0]])
    else:
        new = draw(rng, [c for c in _INWARD_LETTERS if c != inward[i]])
    return f"{outward} {inward[:i]}{new}{inward[i + 1 :]}"


def swap_day_month(dob: date) -> date | None:
    if dob.day > 12 or dob.day == dob.month:
        return None
    return date(dob.year, dob.day, dob.month)


def mistype_dob(dob: date, rng: random.Random, as_of: date) -> date:
    # A two-digit year read in the wrong century (25 → 2025 for someone born in 1925).
    leap_day = (dob.month, dob.day) == (2, 29)
    if dob.year + 100 <= as_of.year and not leap_day and rng.random() < 0.5:
        return dob.replace(year=dob.year + 100)
    for _ in range(20):
        roll = rng.random()
        try:
            if roll < 0.35:
                yy = dob.year % 100
                swapped = (yy % 10) * 10 + yy // 10
                if swapped == yy:
                    continue
                year = dob.year - yy + swapped
                if year > as_of.year:
                    continue
                return dob.replace(year=year)
            if roll < 0.5:
                return dob.replace(year=dob.year + draw(rng, (-1, 1)))
            if roll < 0.8:
                tens, units = divmod(dob.day, 10)
                if rng.random() < 0.7:
                    units = draw(rng, [u for u in range(10) if u != units])
                else:
                    tens = draw(rng, [t for t in range(4) if t != tens])
                return dob.replace(day=tens * 10 + units)
            return dob.replace(month=draw(rng, [m for m in range(1, 13) if m != dob.month]))
        except ValueError:
            continue
    return dob + timedelta(days=1)
