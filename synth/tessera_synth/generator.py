"""Synthetic Somerset data: GP practices, an acute hospital and an opt-out register.

:func:`generate` writes, for one synthetic population, the extracts that real
organisations would hand to the SDK, each in its own convention, with the errors and
traps of real data, and the ground truth that says which rows are the same person.
docs/synthetic-data.md describes every file, every rate and every trap.

The generator is pure and deterministic: one ``random.Random(seed)`` drives everything
(never the global ``random``), the extract date is a parameter, and rows are streamed to
their files through a small shuffle buffer so that memory stays flat and the row order of
one file says nothing about another's.

Nothing here is real: names come from lists written for the project
(``tessera_synth/data/synth_*.txt``) and NHS numbers, postcodes and addresses are drawn in the
valid shape but at random.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any, Final

from client_sdk.errors import InputError
from tessera_synth.draws import draw, draw_below, draw_between, draw_poisson
from tessera_synth.identifiers import Address
from tessera_synth.names import Lists, to_cp1252, to_upper
from tessera_synth.params import (
    MAX_PRACTICES,
    DatasetKind,
    DatasetSummary,
    SynthParams,
    SynthSummary,
)
from tessera_synth.population import (
    Household,
    Person,
    Population,
    Practice,
    age_band,
    age_on,
    hospital_probability,
)
from tessera_synth.render import (
    GP_HEADER,
    HOSPITAL_HEADER,
    HOSPITAL_MAPPING,
    OPTOUT_HEADER,
    OPTOUT_MAPPING,
    Emitter,
    ShuffledCsv,
    gp_mapping,
)

__all__ = ["generate"]

# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------


def _practices(rng: random.Random, lists: Lists, count: int) -> list[Practice]:
    """``count`` practices; every local town is served by one or more of them.

    With more practices than towns, towns are shared. Practices alternate between two
    clinical systems: ISO dates and natural case, or ``DD-MM-YYYY`` and upper case.
    """
    towns = sorted({p.town for p in lists.places if p.local})
    rng.shuffle(towns)
    codes = rng.sample(range(1000), count)
    served: dict[int, list[str]] = {}
    for i in range(max(count, len(towns))):
        served.setdefault(i % count, []).append(towns[i % len(towns)])
    return [
        Practice(
            code=f"L85{codes[i]:03d}",
            towns=tuple(served[i]),
            dob_format="%Y-%m-%d" if i % 2 == 0 else "%d-%m-%Y",
            upper=i % 2 == 1,
        )
        for i in range(count)
    ]


# Every file a run writes: an earlier run's files are removed first, so that a directory
# never mixes two populations (say, five practices then three).
_OUTPUT_PATTERNS: Final = (
    "gp_*.csv",
    "mapping_gp_*.toml",
    "hospital.csv",
    "mapping_hospital.toml",
    "optout.csv",
    "mapping_optout.toml",
    "truth.csv",
    "truth_errors.csv",
    "truth_persons.csv",
    "summary.json",
)


def generate(
    out_dir: Path,
    *,
    persons: int,
    seed: int,
    practices: int = 3,
    opt_out: bool = True,
    params: SynthParams | None = None,
) -> SynthSummary:
    """Write a synthetic population's extracts, their mappings and the ground truth.

    Args:
        out_dir: where to write (created if missing). The files of an earlier run there
            (``gp_*.csv``, ``hospital.csv``, ``truth.csv``, … and their mappings) are
            removed first; other files are left alone.
        persons: distinct persons in the population (registered and outside).
        seed: the seed; the same seed and arguments give byte-identical files.
        practices: number of GP practices (1 or more).
        opt_out: also write the national opt-out register.
        params: rates and traps; :class:`SynthParams` defaults when omitted.

    Returns:
        A :class:`SynthSummary` of what was written.

    Raises:
        InputError: ``persons`` is below 1, ``practices`` is outside 1 to
            :data:`MAX_PRACTICES`, or a rate is out of range.
    """
    if persons < 1 or not 1 <= practices <= MAX_PRACTICES:
        raise InputError(
            f"synthetic data: persons must be at least 1, practices 1 to {MAX_PRACTICES}"
        )
    params = params or SynthParams()
    rng = random.Random(seed)
    shuffle_rng = random.Random(f"{seed}:shuffle")
    lists = Lists()
    out_dir.mkdir(parents=True, exist_ok=True)
    for pattern in _OUTPUT_PATTERNS:
        for stale in sorted(out_dir.glob(pattern)):
            stale.unlink()
    population = Population(rng, lists, params)
    gp_practices = _practices(rng, lists, practices)
    town_practice: dict[str, list[int]] = {}
    for i, pr in enumerate(gp_practices):
        for town in pr.towns:
            town_practice.setdefault(town, []).append(i)
    emitter = Emitter(rng, lists, params, population.nhs)
    run = _Run(out_dir, gp_practices, opt_out, shuffle_rng, emitter, params)
    try:
        outsiders = 0
        local_in_hospital = 0
        made = 0
        ratio = params.outsider_share / (1.0 - params.outsider_share)
        while made < persons:
            hh = population.household(remaining=persons - made)
            choices = town_practice[hh.address.town]
            hh.practice = draw(rng, choices)
            if len(gp_practices) > 1 and rng.random() < params.ghost_rate:
                hh.ghost_practice = draw(
                    rng, [i for i in range(len(gp_practices)) if i != hh.practice]
                )
                if hh.previous is None:
                    hh.previous = population.previous_address(hh.address.town)
            made += len(hh.members)
            local_in_hospital += run.household(hh)
            while made < persons and outsiders < ratio * local_in_hospital:
                person, address = population.outsider()
                run.outsider(person, address)
                outsiders += 1
                made += 1
    finally:
        run.close()
    return run.summary(seed, persons)


class _Run:
    """Open files, row ids and counts of one :func:`generate` call."""

    def __init__(
        self,
        out_dir: Path,
        practices: list[Practice],
        opt_out: bool,
        shuffle_rng: random.Random,
        emitter: Emitter,
        params: SynthParams,
    ) -> None:
        self.out_dir = out_dir
        self.practices = practices
        self.counts: dict[str, Counter[str]] = {k: Counter() for k in ("gp", "hospital", "optout")}
        self.emitter = emitter
        self.rng = emitter.rng
        self.params = params
        self.gp = [
            ShuffledCsv(out_dir / f"gp_{p.code}.csv", GP_HEADER, encoding="utf-8",
                         crlf=False, rng=shuffle_rng)
            for p in practices
        ]  # fmt: skip
        self.gp_ids = [draw_between(self.rng, 10_000, 89_999) for _ in practices]
        self.hospital = ShuffledCsv(out_dir / "hospital.csv", HOSPITAL_HEADER,
                                     encoding="cp1252", crlf=True, rng=shuffle_rng)  # fmt: skip
        self.hospital_id = draw_between(self.rng, 100_000, 899_999)
        self.optout = (
            ShuffledCsv(out_dir / "optout.csv", OPTOUT_HEADER, encoding="utf-8-sig",
                         crlf=True, rng=shuffle_rng)
            if opt_out
            else None
        )  # fmt: skip
        self.optout_id = 0
        self.truth_handle = (out_dir / "truth.csv").open("w", encoding="utf-8", newline="")
        self.truth = csv.writer(self.truth_handle, lineterminator="\n")
        self.truth.writerow(("dataset", "local_id", "person_id"))
        self.errors_handle = (out_dir / "truth_errors.csv").open("w", encoding="utf-8", newline="")
        self.errors = csv.writer(self.errors_handle, lineterminator="\n")
        self.errors.writerow(("dataset", "local_id", "error"))
        self.persons_handle = (out_dir / "truth_persons.csv").open(
            "w", encoding="utf-8", newline=""
        )
        self.persons = csv.writer(self.persons_handle, lineterminator="\n")
        self.persons.writerow(
            ("person_id", "household_id", "sex", "age", "ltc_count", "frailty_index", "traps")
        )

    # -- households ---------------------------------------------------------------------

    def household(self, hh: Household) -> int:
        """Write a local household's rows; return how many members have a hospital row."""
        rng = self.rng
        params = self.params
        numbers = [p.nhs for p in hh.members]
        in_hospital = 0
        for p in hh.members:
            if p.previous_family is not None and rng.random() < params.married_name_stale_rate:
                p.name_stale = "gp" if rng.random() < 0.25 else "hospital"
            gp_address = hh.previous if hh.stale == "gp" and hh.previous else hh.address
            hosp_address = hh.previous if hh.stale == "hospital" and hh.previous else hh.address
            assert hh.practice is not None
            self._gp_row(p, hh.practice, gp_address, numbers, ())
            if hh.ghost_practice is not None and hh.previous is not None:
                self._gp_row(p, hh.ghost_practice, hh.previous, numbers, ("ghost_registration",))
                if "ghost_registration" not in p.traps:
                    p.traps.append("ghost_registration")
            age = age_on(p.dob, params.as_of)
            if rng.random() < hospital_probability(age, p.ltc, params.hospital_base_rate):
                code = self.practices[hh.practice].code
                mothers = [
                    m.given for m in hh.members if m.sex == "F" and m.dob.year <= p.dob.year - 16
                ]
                self._hospital_row(p, hosp_address, numbers, code, mother=mothers[:1])
                in_hospital += 1
            self._optout_row(p, hh.address)
            self._person_row(p)
        return in_hospital

    def outsider(self, p: Person, address: Address) -> None:
        code = (
            f"{draw(self.rng, ('L84', 'L81', 'L83', 'J83', 'M85'))}{draw_below(self.rng, 1000):03d}"
        )
        self._hospital_row(p, address, (), code)
        self._optout_row(p, address)
        self._person_row(p)

    # -- rows ---------------------------------------------------------------------------

    def _tagged(self, dataset: str, kind: DatasetKind, local_id: str, p: Person,
                tags: Iterable[str]) -> None:  # fmt: skip
        self.truth.writerow((dataset, local_id, p.pid))
        counts = self.counts[kind]
        counts["rows"] += 1
        for tag in tags:
            self.errors.writerow((dataset, local_id, tag))
            counts[tag] += 1

    def _gp_row(self, p: Person, practice: int, address: Address, numbers: Sequence[str],
                extra: Sequence[str]) -> None:  # fmt: skip
        pr = self.practices[practice]
        r = self.emitter.render(p, address, self.params.gp, kind="gp", family_numbers=numbers)
        self.gp_ids[practice] += draw_between(self.rng, 1, 9)
        local_id = str(self.gp_ids[practice])
        case = to_upper if pr.upper else _same
        if r.dob is None:
            dob_text = ""
        else:
            dob = date(1900, 1, 1) if r.dob_placeholder else r.dob
            dob_text = (
                f"{dob.year:04d}-{dob.month:02d}-{dob.day:02d}"
                if pr.dob_format == "%Y-%m-%d"
                else f"{dob.day:02d}-{dob.month:02d}-{dob.year:04d}"
            )
        age = age_on(p.dob, self.params.as_of)
        self.gp[practice].write(
            [
                local_id,
                r.nhs or "",
                case(r.given),
                case(" ".join(r.middles)),
                case(r.family),
                dob_text,
                r.sex or "U",
                r.postcode or "",
                case(r.line1),
                case(address.town),
                str(p.ltc),
                "" if p.efi is None else f"{p.efi:.2f}",
                age_band(age),
            ]
        )
        self._tagged(f"gp_{pr.code}", "gp", local_id, p, [*r.tags, *extra])

    def _hospital_row(self, p: Person, address: Address, numbers: Sequence[str],
                      practice_code: str, *, mother: Sequence[str] = ()) -> None:  # fmt: skip
        rng = self.rng
        params = self.params
        r = self.emitter.render(
            p, address, params.hospital, kind="hospital", family_numbers=numbers
        )
        tags = list(r.tags)
        self.hospital_id += draw_between(rng, 1, 40)
        local_id = f"H{self.hospital_id:07d}"
        age = age_on(p.dob, params.as_of)
        # Name as the PAS holds it: "FAMILY, Given Middle".
        family = _hospital_family(r.family, rng, params.hyphen_partial_rate, tags)
        given = r.given
        if r.middles and rng.random() < 0.4:
            given = " ".join([given, *r.middles])
        if age == 0 and not r.unknown and rng.random() < 0.5:
            forms = ["Baby", "Baby Boy" if p.sex == "M" else "Baby Girl"]
            forms.extend(f"Baby Of {m}" for m in mother)
            given = draw(rng, forms)
            tags.append("baby_of")
        elif rng.random() < 0.1:
            given = to_upper(given)
        elif rng.random() < params.hospital_title_rate:
            given = f"{_title(p, age, rng)} {given}"
            tags.append("title")
        if r.unknown:
            given = "Male" if p.sex == "M" else "Female"
        if not r.unknown and " " not in given and rng.random() < params.hospital_initial_rate:
            given = given[0]
            tags.append("given_initial")
        roll = rng.random()
        separator = ", " if roll < 0.94 else ("," if roll < 0.99 else " , ")
        name = f"{family}{separator}{given}"
        name, lost = to_cp1252(name, question_marks=rng.random() < params.question_mark_rate)
        if lost:
            tags.append("question_mark" if "?" in name else "transliterated")
        # NHS number: spaced 3-3-4 mostly.
        if r.nhs is None:
            nhs_text = ""
        elif rng.random() < 0.85:
            nhs_text = f"{r.nhs[:3]} {r.nhs[3:6]} {r.nhs[6:]}"
        else:
            nhs_text = r.nhs
        if r.dob is None:
            dob_text = ""
        else:
            dob = date(1900, 1, 1) if r.dob_placeholder else r.dob
            dob_text = f"{dob.day:02d}/{dob.month:02d}/{dob.year:04d}"
        numeric = rng.random() < 0.2
        if r.sex is None:
            sex_text = "Unknown"
        elif numeric:
            sex_text = "1" if r.sex == "M" else "2"
        else:
            sex_text = "Male" if r.sex == "M" else "Female"
        postcode = "" if r.postcode is None else _hospital_postcode(r.postcode, rng)
        line1 = _hospital_line(r.line1, rng)
        line1, _ = to_cp1252(line1, question_marks=False)
        ae, admissions = _hospital_payload(p, age, rng)
        self.hospital.write(
            [
                local_id,
                nhs_text,
                name,
                dob_text,
                sex_text,
                line1,
                postcode,
                practice_code,
                str(ae),
                str(admissions),
            ]
        )
        self._tagged("hospital", "hospital", local_id, p, tags)

    def _optout_row(self, p: Person, address: Address) -> None:
        if self.optout is None or self.rng.random() >= self.params.opt_out_rate:
            return
        r = self.emitter.render(p, address, self.params.optout, kind="optout", family_numbers=())
        self.optout_id += 1
        local_id = f"NDOP{self.optout_id:07d}"
        dob = r.dob or p.dob
        self.optout.write(
            [
                local_id,
                r.nhs or "",
                to_upper(r.family),
                to_upper(r.given),
                f"{dob.year:04d}{dob.month:02d}{dob.day:02d}",
                r.postcode or "",
            ]
        )
        self._tagged("optout", "optout", local_id, p, r.tags)

    def _person_row(self, p: Person) -> None:
        self.persons.writerow(
            (
                p.pid,
                p.household,
                p.sex,
                age_on(p.dob, self.params.as_of),
                p.ltc,
                "" if p.efi is None else f"{p.efi:.2f}",
                ";".join(p.traps),
            )
        )

    # -- end ----------------------------------------------------------------------------

    def close(self) -> None:
        for writer in self.gp:
            writer.close()
        self.hospital.close()
        if self.optout is not None:
            self.optout.close()
        self.truth_handle.close()
        self.errors_handle.close()
        self.persons_handle.close()

    def summary(self, seed: int, persons: int) -> SynthSummary:
        out = self.out_dir
        datasets: list[DatasetSummary] = []
        for pr, writer in zip(self.practices, self.gp, strict=True):
            mapping = out / f"mapping_gp_{pr.code}.toml"
            mapping.write_text(gp_mapping(pr.code, pr.dob_format), encoding="utf-8")
            datasets.append(DatasetSummary(f"gp_{pr.code}", "gp", out / f"gp_{pr.code}.csv",
                                           mapping, "utf-8", writer.rows))  # fmt: skip
        mapping = out / "mapping_hospital.toml"
        mapping.write_text(HOSPITAL_MAPPING, encoding="utf-8")
        datasets.append(DatasetSummary("hospital", "hospital", out / "hospital.csv", mapping,
                                       "cp1252", self.hospital.rows))  # fmt: skip
        if self.optout is not None:
            mapping = out / "mapping_optout.toml"
            mapping.write_text(OPTOUT_MAPPING, encoding="utf-8")
            datasets.append(DatasetSummary("optout", "optout", out / "optout.csv", mapping,
                                           "utf-8-sig", self.optout.rows))  # fmt: skip
        injected = {k: dict(sorted(v.items())) for k, v in self.counts.items() if v}
        summary = SynthSummary(
            out_dir=out,
            seed=seed,
            persons=persons,
            datasets=tuple(datasets),
            truth=out / "truth.csv",
            truth_errors=out / "truth_errors.csv",
            truth_persons=out / "truth_persons.csv",
            injected=injected,
        )
        manifest = {
            "seed": seed,
            "persons": persons,
            "params": _jsonable(asdict(self.params)),
            "datasets": [
                {
                    "name": d.name,
                    "kind": d.kind,
                    "file": d.path.name,
                    "mapping": d.mapping.name,
                    "encoding": d.encoding,
                    "rows": d.rows,
                    "one_record_per_person": d.one_record_per_person,
                }
                for d in datasets
            ],
            "injected": injected,
        }
        (out / "summary.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        return summary


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, date):
        return value.isoformat()
    return value


def _same(text: str) -> str:
    return text


def _hospital_family(family: str, rng: random.Random, partial: float, tags: list[str]) -> str:
    """The family name as the PAS writes it: upper case, punctuation as keyed."""
    name = to_upper(family)
    if "-" in name and rng.random() < partial:
        parts = name.split("-")
        name = parts[0] if rng.random() < 0.7 else parts[-1]
        tags.append("hyphen_partial")
    elif "-" in name and rng.random() < 0.15:
        name = name.replace("-", " ")
    if "'" in name:
        roll = rng.random()
        if roll < 0.2:
            name = name.replace("'", "")
        elif roll < 0.3:
            name = name.replace("'", " ")
        elif roll < 0.4:
            name = name.replace("'", "\u2019")
    if name.startswith("MC") and rng.random() < 0.1:
        name = "MC " + name[2:]
    if " " in name and "-" not in family and rng.random() < 0.2:
        name = name.replace(" ", "")  # ST JOHN → STJOHN, DE SOUZA → DESOUZA
    return name


def _title(p: Person, age: int, rng: random.Random) -> str:
    if age >= 25 and rng.random() < 0.03:
        return "Dr"
    if p.sex == "M":
        return "Master" if age < 16 else "Mr"
    if age < 16:
        return "Miss"
    if p.previous_family is not None or (age > 60 and rng.random() < 0.7):
        return "Mrs"
    return "Ms" if rng.random() < 0.4 else "Miss"


def _hospital_postcode(postcode: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.8:
        return postcode
    if roll < 0.9:
        return postcode.replace(" ", "")
    if roll < 0.95:
        return postcode.lower()
    if roll < 0.98:
        return postcode.replace(" ", "").lower()
    return postcode.replace(" ", "  ")


_ABBREVIATIONS: Final = (
    (" Street", " St"),
    (" Road", " Rd"),
    (" Lane", " Ln"),
    (" Close", " Cl"),
    (" Avenue", " Ave"),
    (" Drive", " Dr"),
)


def _hospital_line(line: str, rng: random.Random) -> str:
    text = to_upper(line)
    if rng.random() < 0.3:
        for long, short in _ABBREVIATIONS:
            text = text.replace(to_upper(long), to_upper(short))
    return text


def _hospital_payload(p: Person, age: int, rng: random.Random) -> tuple[int, int]:
    efi = p.efi or 0.0
    rate = p.risk * math.exp(
        -1.9
        + 0.25 * min(p.ltc, 6)
        + 2.0 * efi
        + 0.015 * max(age - 70, 0)
        + (0.6 if age < 5 else 0.0)
    )
    rate = min(rate, 20.0)
    ae = draw_poisson(rng, rate)
    p_admit = min(0.15 + 0.006 * max(age - 40, 0) + 0.03 * p.ltc, 0.7)
    admitted = sum(1 for _ in range(ae) if rng.random() < p_admit)
    direct = draw_poisson(rng, rate * 0.12)
    return ae, admitted + direct
