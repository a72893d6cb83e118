"""The populations of :mod:`bench.populations`: name lists written for it, persons,
households, communities, institutions and the structure that mixes them.

Nothing is taken from the SDK's synthetic generator: a linkage spec is stressed on a
population model of its own (docs/linkage-spec.md, "Other population structures").
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

__all__ = [
    "CONCENTRATED",
    "ENGLISH",
    "INWARD_LETTERS",
    "NICKNAMES",
    "SPELLINGS",
    "TODAY",
    "Community",
    "Institution",
    "Person",
    "Postcodes",
    "Structure",
    "make_population",
    "nhs_valid",
]

TODAY = date(2026, 6, 30)
"""The extracts' date: ages and 'no date in the future' are relative to it."""

# --- name lists (written for this module) ----------------------------------------------

_ENGLISH_FAMILY = (
    "SMITH JONES TAYLOR BROWN WILLIAMS WILSON JOHNSON DAVIES ROBINSON WRIGHT THOMPSON EVANS "
    "WALKER WHITE ROBERTS GREEN HALL WOOD JACKSON CLARKE HUGHES EDWARDS HARRIS LEWIS TURNER "
    "HILL COOPER WARD MORRIS KING MOORE BAKER PARKER CLARK MARTIN HARRISON ALLEN YOUNG "
    "MORGAN MITCHELL CAMPBELL KELLY PRICE BELL BAILEY COOK COLLINS SHAW MURPHY SIMPSON "
    "STEWART RICHARDS MARSHALL FOSTER POWELL HUNT WEBB ELLIS PALMER HOLMES MASON GRAY "
    "KNIGHT BARKER LLOYD BUTLER FISHER STEVENS DIXON HARVEY PEARSON GRAHAM FLETCHER GIBSON "
    "OBRIEN MACDONALD MCCARTHY ONEILL DOYLE BYRNE NOWAK KOWALSKI"
).split()
_ENGLISH_MALE = (
    "JOHN DAVID MICHAEL PAUL ANDREW PETER JAMES ROBERT MARK RICHARD STEPHEN WILLIAM THOMAS "
    "CHRISTOPHER ANTHONY KEVIN GARY IAN SIMON DANIEL MATTHEW JASON LEE CRAIG DARREN NEIL "
    "JACK HARRY GEORGE OLIVER CHARLIE JOSHUA SAMUEL JOSEPH LIAM CONNOR OSCAR ALFIE"
).split()
_ENGLISH_FEMALE = (
    "MARGARET SUSAN SARAH ELIZABETH MARY PATRICIA JULIE KAREN HELEN LISA CLAIRE NICOLA "
    "EMMA REBECCA LAURA RACHEL JENNIFER JOANNE AMANDA CATHERINE VICTORIA MICHELLE KATHERINE "
    "OLIVIA AMELIA EMILY JESSICA SOPHIE CHLOE LUCY GRACE ELLIE HANNAH MEGAN POPPY ISLA"
).split()
NICKNAMES = {  # diminutives a clerk might write; the SDK's own table decides what they key to
    "WILLIAM": ("BILL", "WILL", "BILLY"),
    "ROBERT": ("BOB", "ROB", "ROBBIE"),
    "RICHARD": ("RICH", "DICK"),
    "JAMES": ("JIM", "JIMMY", "JAMIE"),
    "MICHAEL": ("MIKE", "MICK"),
    "THOMAS": ("TOM", "TOMMY"),
    "CHRISTOPHER": ("CHRIS",),
    "DANIEL": ("DAN", "DANNY"),
    "MATTHEW": ("MATT",),
    "ANTHONY": ("TONY",),
    "ANDREW": ("ANDY",),
    "STEPHEN": ("STEVE",),
    "JOSEPH": ("JOE",),
    "SAMUEL": ("SAM",),
    "ELIZABETH": ("LIZ", "BETH", "LIZZIE"),
    "MARGARET": ("MAGGIE", "PEGGY"),
    "SUSAN": ("SUE",),
    "PATRICIA": ("PAT", "TRISH"),
    "KATHERINE": ("KATE", "KATIE"),
    "CATHERINE": ("CATH", "CATHY"),
    "REBECCA": ("BECKY",),
    "VICTORIA": ("VICKY",),
    "JENNIFER": ("JENNY", "JEN"),
    "ABDUL": ("ABDUL",),
}

# South Asian and Welsh communities: a few family names cover most people.
_COMMUNITY_FAMILY = {
    "KHAN": 14,
    "BEGUM": 9,
    "HUSSAIN": 9,
    "AHMED": 9,
    "ALI": 9,
    "PATEL": 16,
    "SHAH": 4,
    "IQBAL": 3,
    "AKHTAR": 3,
    "MAHMOOD": 3,
    "BIBI": 3,
    "MIAH": 4,
    "RAHMAN": 3,
    "ISLAM": 2,
    "UDDIN": 2,
    "JONES": 14,
    "WILLIAMS": 8,
    "DAVIES": 7,
    "EVANS": 5,
    "THOMAS": 5,
    "ROBERTS": 4,
    "LEWIS": 3,
    "HUGHES": 3,
    "MORGAN": 3,
    "GRIFFITHS": 2,
    "OWEN": 2,
}
_COMMUNITY_MALE = {
    "MOHAMMED": 30,
    "ABDUL": 5,
    "AHMED": 4,
    "ALI": 4,
    "IMRAN": 3,
    "USMAN": 3,
    "BILAL": 3,
    "HAMZA": 3,
    "YUSUF": 3,
    "IBRAHIM": 3,
    "ZAIN": 2,
    "AYAAN": 2,
    "RAJ": 2,
    "SANJAY": 2,
    "VIJAY": 2,
    "DAVID": 6,
    "JOHN": 6,
    "GARETH": 3,
    "RHYS": 3,
    "DYLAN": 3,
    "DAFYDD": 2,
    "HUW": 2,
    "IWAN": 2,
    "EVAN": 2,
}
_COMMUNITY_FEMALE = {
    "FATIMA": 8,
    "AISHA": 6,
    "MARYAM": 5,
    "ZAINAB": 4,
    "KHADIJA": 3,
    "AMINA": 4,
    "SANA": 3,
    "NADIA": 3,
    "YASMIN": 4,
    "SHAZIA": 3,
    "PRIYA": 3,
    "ANJALI": 2,
    "NASREEN": 3,
    "SIAN": 6,
    "CERYS": 4,
    "MEGAN": 4,
    "ELERI": 2,
    "CATRIN": 3,
    "BETHAN": 3,
    "NIA": 3,
    "RHIANNON": 3,
    "LOWRI": 2,
}
SPELLINGS = {  # one name, written several ways (a person is recorded under any of them)
    "MOHAMMED": ("MOHAMMED MUHAMMAD MOHAMED MOHAMMAD MUHAMMED MOHAMAD MAHOMED MD MOHD".split()),
    "AISHA": ("AISHA", "AYESHA", "AISHAH", "AYSHA"),
    "MARYAM": ("MARYAM", "MARIAM", "MARIUM"),
    "YUSUF": ("YUSUF", "YOUSEF", "YOUSUF", "YUSEF"),
    "HUSSAIN": ("HUSSAIN", "HUSAIN", "HUSSEIN", "HOSSAIN"),
    "AHMED": ("AHMED", "AHMAD", "AHMET"),
    "KHADIJA": ("KHADIJA", "KHADIJAH", "KHADEJA"),
    "ZAINAB": ("ZAINAB", "ZAYNAB"),
    "SIAN": ("SIAN", "SIÂN", "SHAN"),
    "DAFYDD": ("DAFYDD", "DAFFYD", "DAVYDD"),
}
INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


def _weighted(
    table: dict[str, int] | Sequence[str], zipf: float = 0.8
) -> tuple[list[str], list[float]]:
    if isinstance(table, dict):
        return list(table), [float(w) for w in table.values()]
    names = list(table)
    return names, [1.0 / (rank + 1) ** zipf for rank in range(len(names))]


# --- the population ------------------------------------------------------------------------


@dataclass(slots=True)
class Person:
    """One true person; ``family_id`` groups a household, ``suffix`` is JR/SR or empty."""

    pid: int
    nhs: str
    given: str
    middle: str
    family: str
    dob: date
    sex: str
    postcode: str
    family_id: int
    suffix: str = ""
    newborn: bool = False
    relatives: list[int] = field(default_factory=list)


def _nhs_check(nine: str) -> int:
    total = sum(int(d) * (10 - i) for i, d in enumerate(nine))
    check = 11 - total % 11
    return 0 if check == 11 else check


def nhs_valid(number: str) -> bool:
    return len(number) == 10 and number.isdigit() and _nhs_check(number[:9]) == int(number[9])


class _Numbers:
    """Unique valid NHS numbers."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._used: set[str] = set()

    def new(self) -> str:
        while True:
            nine = str(self._rng.randrange(400_000_000, 799_999_999))
            check = _nhs_check(nine)
            if check != 10 and nine not in self._used:
                self._used.add(nine)
                return nine + str(check)


class Postcodes:
    """Postcodes in UK format, grouped in districts and sectors of a few areas."""

    def __init__(self, rng: random.Random, areas: Sequence[str]) -> None:
        self._rng = rng
        self._areas = list(areas)

    def district(self) -> str:
        return f"{self._rng.choice(self._areas)}{self._rng.randint(1, 30)}"

    def in_district(self, district: str) -> str:
        return (
            f"{district} {self._rng.randint(0, 9)}"
            f"{self._rng.choice(INWARD_LETTERS)}{self._rng.choice(INWARD_LETTERS)}"
        )

    def new(self) -> str:
        return self.in_district(self.district())

    def near(self, postcode: str) -> str:
        """Another postcode in the same district."""
        while True:
            other = self.in_district(postcode.split()[0])
            if other != postcode:
                return other


@dataclass(frozen=True, slots=True)
class Community:
    """Who lives in a population: its names and how many share an address."""

    family: tuple[list[str], list[float]]
    male: tuple[list[str], list[float]]
    female: tuple[list[str], list[float]]
    areas: tuple[str, ...] = ("BD", "LS", "CF", "B")
    households_per_postcode: int = 14
    middle_share: float = 0.4


ENGLISH = Community(
    _weighted(_ENGLISH_FAMILY), _weighted(_ENGLISH_MALE, 0.6), _weighted(_ENGLISH_FEMALE, 0.6)
)
CONCENTRATED = Community(
    _weighted(_COMMUNITY_FAMILY),
    _weighted(_COMMUNITY_MALE),
    _weighted(_COMMUNITY_FEMALE),
    middle_share=0.7,
)


@dataclass(frozen=True, slots=True)
class Institution:
    """Sites where many unrelated people share one postcode (care home, hall, prison)."""

    sites: int
    residents: int
    min_age: int
    max_age: int
    sex: str = ""  # "M" or "F" for a single-sex site
    assigned_dob: float = 0.0  # share whose date of birth is unknown, recorded as 1 January


@dataclass(frozen=True, slots=True)
class Structure:
    """Population structure parameters of a scenario."""

    community: Community = ENGLISH
    twins: float = 0.015  # share of births that are twins (triplets below)
    triplets: float = 0.0005
    twin_same_initial: float = 0.3  # a co-twin's given name with the same initial
    newborns: float = 0.0  # share of families whose youngest was born in the last 8 months
    junior: float = 0.0  # share of families whose first son has his father's names
    double_barrelled: float = 0.0  # share of families with a hyphenated family name
    institutions: tuple[Institution, ...] = ()


def _pick(rng: random.Random, table: tuple[list[str], list[float]]) -> str:
    return rng.choices(table[0], table[1])[0]


def _birth(rng: random.Random, low: int, high: int) -> date:
    start = TODAY.replace(year=TODAY.year - high - 1)
    span = (TODAY.replace(year=TODAY.year - low) - start).days
    return start + timedelta(days=rng.randrange(max(span, 1)))


def _given(rng: random.Random, community: Community, sex: str) -> tuple[str, str]:
    table = community.male if sex == "M" else community.female
    given = _pick(rng, table)
    middle = ""
    if rng.random() < community.middle_share:
        middle = _pick(rng, table)
        while middle == given:
            middle = _pick(rng, table)
    return given, middle


def _family_name(rng: random.Random, structure: Structure) -> str:
    family = _pick(rng, structure.community.family)
    if rng.random() < structure.double_barrelled:
        second = _pick(rng, structure.community.family)
        if second != family:
            family = f"{family}-{second}"
    return family


def make_population(n: int, rng: random.Random, structure: Structure) -> list[Person]:
    """Households (and institutions) of one community, with shared family names and homes."""
    community = structure.community
    numbers = _Numbers(rng)
    postcodes = Postcodes(rng, community.areas)
    people: list[Person] = []

    def add(
        given: str, middle: str, family: str, dob: date, sex: str, postcode: str, fid: int
    ) -> Person:
        person = Person(len(people), numbers.new(), given, middle, family, dob, sex, postcode, fid)
        people.append(person)
        return person

    for site in structure.institutions:
        for _ in range(site.sites):
            postcode = postcodes.new()
            for _ in range(site.residents):
                sex = site.sex or rng.choice("MF")
                given, middle = _given(rng, community, sex)
                family = _family_name(rng, structure)
                dob = _birth(rng, site.min_age, site.max_age)
                if rng.random() < site.assigned_dob:
                    dob = date(dob.year, 1, 1)
                add(given, middle, family, dob, sex, postcode, -len(people) - 1)
    homes: list[str] = []
    family_id = 0
    while len(people) < n:
        if not homes or rng.random() < 1 / community.households_per_postcode:
            homes.append(postcodes.new())
        postcode = homes[-1] if rng.random() < 0.8 else rng.choice(homes)
        family = _family_name(rng, structure)
        family_id += 1
        adults = rng.choice((1, 2, 2, 2))
        members: list[Person] = []
        for a in range(adults):
            sex = "M" if (a == 0 and adults == 2) else ("F" if a == 1 else rng.choice("MF"))
            given, middle = _given(rng, community, sex)
            dob = _birth(rng, 25, 90)
            members.append(add(given, middle, family, dob, sex, postcode, family_id))
        father = next((p for p in members if p.sex == "M"), None)
        youngest = max(p.dob for p in members)
        children = rng.choice((0, 0, 1, 2, 2, 3, 4)) if youngest.year < TODAY.year - 20 else 0
        for c in range(children):
            low = max(0, TODAY.year - youngest.year - 45)
            high = max(low, TODAY.year - youngest.year - 18)
            if c == children - 1 and rng.random() < structure.newborns:
                dob = TODAY - timedelta(days=rng.randrange(1, 240))
            else:
                dob = _birth(rng, low, high)
            roll = rng.random()
            births = 3 if roll < structure.triplets else 2 if roll < structure.twins else 1
            first: Person | None = None
            for _ in range(births):
                sex = rng.choice("MF")
                given, middle = _given(rng, community, sex)
                if first is not None and rng.random() < structure.twin_same_initial:
                    table = community.male if sex == "M" else community.female
                    same = [g for g in table[0] if g[0] == first.given[0] and g != first.given]
                    given = rng.choice(same) if same else given
                suffix = ""
                if (
                    father is not None
                    and first is None
                    and sex == "M"
                    and c == 0
                    and rng.random() < structure.junior
                ):
                    given, middle, suffix = father.given, father.middle, "JR"
                    father.suffix = "SR"
                child = add(given, middle, family, dob, sex, postcode, family_id)
                child.suffix = suffix
                child.newborn = (TODAY - dob).days < 240
                members.append(child)
                first = first or child
        for p in members:
            p.relatives = [o.pid for o in members if o is not p]
    return people
