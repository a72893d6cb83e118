"""The synthetic population: households, persons, GP practices and how they change
over time (moves, deaths, births, registrations).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final

from tessera_synth.draws import draw, draw_below, draw_between, draw_poisson
from tessera_synth.identifiers import Address, NhsBook, PostcodeBook
from tessera_synth.names import GROUPS, ORIGINS, Lists, Weighted
from tessera_synth.params import SynthParams

__all__ = [
    "Household",
    "Person",
    "Population",
    "Practice",
    "age_band",
    "age_on",
    "hospital_probability",
]

# ---------------------------------------------------------------------------------------
# The population
# ---------------------------------------------------------------------------------------

# Age pyramid of a Somerset-like population (share per 5-year band, 0-4 … 90-99).
_PYRAMID: Final = (
    4.8, 5.4, 5.7, 5.3, 4.6, 5.2, 5.6, 5.7, 5.6, 5.9,
    7.1, 7.4, 6.9, 6.3, 6.6, 5.0, 3.4, 2.0, 1.1,
)  # fmt: skip


@dataclass(slots=True)
class Person:
    pid: str
    household: str
    sex: str
    group: str
    given: str
    middles: list[str]
    family: str
    previous_family: str | None
    dob: date
    nhs: str
    ltc: int = 0
    efi: float | None = None
    risk: float = 1.0
    traps: list[str] = field(default_factory=list)
    name_stale: str | None = None


@dataclass(slots=True)
class Household:
    hid: str
    members: list[Person]
    address: Address
    previous: Address | None
    stale: str | None
    practice: int | None
    ghost_practice: int | None


@dataclass(frozen=True, slots=True)
class Practice:
    code: str
    towns: tuple[str, ...]
    dob_format: str
    upper: bool


def _feminise(surname: str) -> str:
    for male, female in (("ski", "ska"), ("cki", "cka"), ("dzki", "dzka")):
        if surname.endswith(male):
            return surname[: -len(male)] + female
    return surname


def age_band(age: int) -> str:
    for upper, band in ((17, "0-17"), (44, "18-44"), (64, "45-64"), (74, "65-74"), (84, "75-84")):
        if age <= upper:
            return band
    return "85+"


def age_on(dob: date, as_of: date) -> int:
    return as_of.year - dob.year - ((as_of.month, as_of.day) < (dob.month, dob.day))


class Population:
    """Draws households and persons; knows nothing about files."""

    def __init__(self, rng: random.Random, lists: Lists, params: SynthParams) -> None:
        self.rng = rng
        self.lists = lists
        self.params = params
        self.nhs = NhsBook(rng)
        self.postcodes = PostcodeBook(rng, lists)
        self.person_seq = 0
        self.household_seq = 0
        self.group_pick = Weighted(GROUPS, list(ORIGINS.values()))
        self.namesake_pool: list[Person] = []
        band_weights = list(_PYRAMID)
        self.adult_bands = Weighted([str(i) for i in range(4, len(_PYRAMID))], band_weights[4:])
        self.any_bands = Weighted([str(i) for i in range(len(_PYRAMID))], band_weights)

    # -- names --------------------------------------------------------------------------

    def _era(self, dob: date) -> str:
        if dob.year < 1960:
            return "old"
        return "mid" if dob.year < 1990 else "young"

    def given_name(self, sex: str, group: str, dob: date, *, avoid: Sequence[str] = ()) -> str:
        table = self.lists.given[(sex, group, self._era(dob))]
        for _ in range(50):
            name = table.pick(self.rng)
            if name not in avoid:
                return name
        return name

    def similar_given(self, sex: str, group: str, dob: date, like: str) -> str:
        key = (sex, group, self._era(dob), like[0])
        choices = [n for n in self.lists.by_initial.get(key, []) if n != like]
        if not choices:
            return self.given_name(sex, group, dob, avoid=(like,))
        return draw(self.rng, choices)

    def middles(self, sex: str, group: str, dob: date, given: str) -> list[str]:
        rng = self.rng
        share = 0.7 if group == "british" else 0.3
        if rng.random() >= share:
            return []
        count = 2 if rng.random() < 0.1 else 1
        return [self.given_name(sex, group, dob, avoid=(given,)) for _ in range(count)]

    def surname(self, group: str) -> str:
        rng = self.rng
        if group == "british":
            roll = rng.random()
            if roll < 0.5:
                return draw(rng, self.lists.tail_roots) + draw(rng, self.lists.tail_suffixes)
            if roll < 0.51:
                a = self.lists.surnames["british"].pick(rng)
                b = self.lists.surnames["british"].pick(rng)
                if a != b and "-" not in a + b and " " not in a + b:
                    return f"{a}-{b}"
        return self.lists.surnames[group].pick(rng)

    # -- persons ------------------------------------------------------------------------

    def _dob_for_age(self, age: int) -> date:
        as_of = self.params.as_of
        return as_of - timedelta(days=int(age * 365.25) + draw_below(self.rng, 365))

    def age_from(self, bands: Weighted, low: int = 0, high: int = 99) -> int:
        for _ in range(100):
            band = int(bands.pick(self.rng))
            age = band * 5 + draw_below(self.rng, 5 if band < 18 else 10)
            if low <= age <= high:
                return age
        return max(low, min(high, 40))

    def person(
        self,
        household: str,
        sex: str,
        group: str,
        age: int,
        family: str,
        *,
        previous_family: str | None = None,
        dob: date | None = None,
        given: str | None = None,
    ) -> Person:
        self.person_seq += 1
        birth = dob or self._dob_for_age(age)
        first = given or self.given_name(sex, group, birth)
        if sex == "F":
            family = _feminise(family)
            if previous_family is not None:
                previous_family = _feminise(previous_family)
            # Sikh women are often Kaur where the men are Singh; Bangladeshi wives Begum.
            if family == "Singh" and self.rng.random() < 0.7:
                family = "Kaur"
            elif group == "south_asian_muslim" and age >= 18 and self.rng.random() < 0.15:
                family = "Begum"
        p = Person(
            pid=f"P{self.person_seq:07d}",
            household=household,
            sex=sex,
            group=group,
            given=first,
            middles=self.middles(sex, group, birth, first),
            family=family,
            previous_family=previous_family,
            dob=birth,
            nhs=self.nhs.new(),
        )
        self._health(p)
        return p

    def _health(self, p: Person) -> None:
        rng = self.rng
        age = age_on(p.dob, self.params.as_of)
        p.ltc = min(12, draw_poisson(rng, 0.08 + 3.6 * (age / 85.0) ** 3))
        if age >= 65:
            deficits = p.ltc + draw_poisson(rng, 0.5 + 0.12 * (age - 60))
            p.efi = min(deficits, 36) / 36.0
        p.risk = rng.gammavariate(1.3, 1 / 1.3)

    # -- households ---------------------------------------------------------------------

    def household(self, *, remaining: int) -> Household:
        """A local household: its members, address, practice set by the caller."""
        rng = self.rng
        self.household_seq += 1
        hid = f"H{self.household_seq:07d}"
        group = self.group_pick.pick(rng)
        members: list[Person] = []
        roll = rng.random()
        if roll < 0.34 or remaining == 1:
            members.append(self._single(hid, group))
        elif roll < 0.64:
            members.extend(self._couple(hid, group, with_children=False))
        elif roll < 0.88:
            members.extend(self._couple(hid, group, with_children=True))
        elif roll < 0.95:
            members.extend(self._lone_parent(hid, group))
        else:
            members.extend(self._couple(hid, group, with_children=False, elderly=True))
            parent_age = min(
                99, age_on(members[0].dob, self.params.as_of) + draw_between(rng, 22, 35)
            )
            sex = "F" if rng.random() < 0.75 else "M"
            maiden = self.surname(group) if sex == "F" and rng.random() < 0.85 else None
            elder = self.person(hid, sex, group, parent_age, members[0].family,
                                previous_family=maiden)  # fmt: skip
            if elder.previous_family is not None:
                elder.traps.append("surname_changed")
            members.append(elder)
        if len(members) > remaining:
            members = members[:remaining]
            kept = {p.pid for p in members}
            for p in members:
                p.traps = [t for t in p.traps if not t.startswith("twin_of=") or t[8:] in kept]
        town = draw(rng, self.postcodes.local_towns)
        address = self.postcodes.address(town)
        previous = None
        stale = None
        if rng.random() < self.params.mover_rate:
            previous = self.previous_address(town)
            stale = "gp" if rng.random() < self.params.mover_gp_stale else "hospital"
        for p in members:
            if "moved" not in p.traps and previous is not None:
                p.traps.append("moved")
        return Household(hid, members, address, previous, stale, None, None)

    def previous_address(self, town: str) -> Address:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            return self.postcodes.address(town)
        if roll < 0.9:
            return self.postcodes.address(draw(rng, self.postcodes.local_towns))
        return self.postcodes.outside()

    def _single(self, hid: str, group: str) -> Person:
        rng = self.rng
        sex = "F" if rng.random() < 0.55 else "M"
        age = self.age_from(self.adult_bands, 18)
        if age < 60 and rng.random() < 0.4:
            age = self.age_from(self.adult_bands, 60)
        if self.namesake_pool and rng.random() < self.params.namesake_rate:
            twin_of = draw(rng, self.namesake_pool)
            p = self.person(
                hid,
                twin_of.sex,
                twin_of.group,
                0,
                twin_of.family,
                dob=twin_of.dob,
                given=twin_of.given,
            )
            p.traps.append(f"namesake_of={twin_of.pid}")
            return p
        p = self.person(hid, sex, group, age, self.surname(group))
        self._remember(p)
        return p

    def _remember(self, p: Person) -> None:
        if p.group != "british" or p.family not in _COMMON_SURNAMES:
            return
        if len(self.namesake_pool) < 2000:
            self.namesake_pool.append(p)
        else:
            self.namesake_pool[draw_below(self.rng, 2000)] = p

    def _couple(
        self, hid: str, group: str, *, with_children: bool, elderly: bool = False
    ) -> list[Person]:
        rng = self.rng
        if with_children:
            age = draw_between(rng, 26, 58)
        elif elderly:
            age = draw_between(rng, 40, 70)
        else:
            age = self.age_from(self.adult_bands, 20)
            if age < 50 and rng.random() < 0.4:
                age = self.age_from(self.adult_bands, 55)
        partner_group = group if rng.random() < 0.9 else "british"
        his = self.surname(group)
        her_birth = self.surname(partner_group)
        married = rng.random() < 0.7
        children_family = his
        if married:
            roll = rng.random()
            her = his if roll < 0.85 else (her_birth if roll < 0.95 else f"{her_birth}-{his}")
            if "-" in her_birth and her != her_birth:
                her = his
        else:
            her = her_birth
            roll = rng.random()
            if roll > 0.85 and "-" not in his + her_birth:
                children_family = f"{her_birth}-{his}"
            elif roll > 0.7:
                children_family = her_birth
        previous = her_birth if her != her_birth else None
        him = self.person(hid, "M", group, age, his)
        her_age = max(18, min(99, age + round(rng.gauss(-2, 3))))
        wife = self.person(hid, "F", partner_group, her_age, her, previous_family=previous)
        if previous is not None:
            wife.traps.append("surname_changed")
        members = [him, wife]
        if with_children:
            members.extend(self._children(hid, group, min(age, her_age), children_family, him))
        return members

    def _lone_parent(self, hid: str, group: str) -> list[Person]:
        rng = self.rng
        sex = "F" if rng.random() < 0.88 else "M"
        age = draw_between(rng, 20, 55)
        family = self.surname(group)
        parent = self.person(hid, sex, group, age, family)
        return [parent, *self._children(hid, group, age, family, parent if sex == "M" else None)]

    def _children(
        self, hid: str, group: str, parent_age: int, family: str, father: Person | None
    ) -> list[Person]:
        rng = self.rng
        count = rng.choices((1, 2, 3, 4), weights=(40, 40, 15, 5))[0]
        # The eldest was born when the parent was 18 to 36; the others 1 to 5 years apart.
        # Children over 24 have left home.
        age = parent_age - draw_between(rng, min(18, parent_age), min(36, parent_age))
        kids: list[Person] = []
        for _ in range(count):
            if age < 0:
                break
            if age > 24:
                age -= draw_between(rng, 1, 5)
                continue
            sex = "M" if rng.random() < 0.51 else "F"
            given = None
            if (
                sex == "M"
                and father is not None
                and rng.random() < self.params.junior_rate
                and all(k.given != father.given for k in kids)
            ):
                given = father.given
            avoid = [k.given for k in kids]
            dob = self._dob_for_age(age)
            if given is None:
                given = self.given_name(sex, group, dob, avoid=avoid)
            kid = self.person(hid, sex, group, age, family, dob=dob, given=given)
            if father is not None and given == father.given:
                kid.traps.append(f"junior_of={father.pid}")
            kids.append(kid)
            if rng.random() < self.params.twin_rate:
                twin_sex = sex if rng.random() < 0.65 else ("F" if sex == "M" else "M")
                renamable = group == "british" and not kid.traps
                if twin_sex == sex and rng.random() < 0.3:
                    if renamable and rng.random() < 0.5:
                        pair = draw(rng, self.lists.twin_names[sex])
                        kid.given, twin_given = pair if rng.random() < 0.5 else pair[::-1]
                    else:
                        twin_given = self.similar_given(sex, group, dob, given)
                else:
                    twin_given = self.given_name(twin_sex, group, dob, avoid=[*avoid, given])
                twin = self.person(hid, twin_sex, group, age, family, dob=dob, given=twin_given)
                twin.traps.append(f"twin_of={kid.pid}")
                kid.traps.append(f"twin_of={twin.pid}")
                kids.append(twin)
            age -= draw_between(rng, 1, 5)
        return kids

    def outsider(self) -> tuple[Person, Address]:
        """A hospital patient from outside the catchment, older than the population."""
        rng = self.rng
        self.household_seq += 1
        hid = f"H{self.household_seq:07d}"
        group = self.group_pick.pick(rng)
        for _ in range(50):
            age = self.age_from(self.any_bands)
            if rng.random() < hospital_probability(age, 0, self.params.hospital_base_rate):
                break
        sex = "F" if rng.random() < 0.52 else "M"
        p = self.person(hid, sex, group, age, self.surname(group))
        p.traps.append("outsider")
        return p, self.postcodes.outside()


_COMMON_SURNAMES: Final = frozenset(
    "Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson "
    "Thompson Wright Walker White Edwards Hughes Green Hall Lewis Harris Clarke".split()
)


def hospital_probability(age: int, ltc: int, base: float) -> float:
    if age == 0:
        return 0.9  # born in the hospital
    p = base + 0.006 * max(age - 40, 0) + 0.06 * ltc + (0.15 if age < 5 else 0.0)
    return min(p, 0.95)
