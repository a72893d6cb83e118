"""Writers and renderers: the shuffled CSV files, and one person rendered as one source
(GP practice, hospital, opt-out register) records them, with that source's errors.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Final

from tessera_synth.draws import draw, draw_below
from tessera_synth.identifiers import (
    Address,
    NhsBook,
    mistype_dob,
    mistype_nhs,
    mistype_postcode,
    nhs_valid,
    swap_day_month,
)
from tessera_synth.names import Lists, ascii_fold, mistype_name
from tessera_synth.params import DatasetKind, ErrorRates, SynthParams
from tessera_synth.population import Person

__all__ = [
    "GP_HEADER",
    "HOSPITAL_HEADER",
    "HOSPITAL_MAPPING",
    "OPTOUT_HEADER",
    "OPTOUT_MAPPING",
    "Emitter",
    "ShuffledCsv",
    "gp_mapping",
]

# ---------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------


class ShuffledCsv:
    """A CSV writer that emits rows through a shuffle buffer (row order hides nothing)."""

    def __init__(
        self, path: Path, header: Sequence[str], *, encoding: str, crlf: bool, rng: random.Random
    ) -> None:
        self.handle: IO[str] = path.open("w", encoding=encoding, newline="", errors="strict")
        self.writer = csv.writer(self.handle, lineterminator="\r\n" if crlf else "\n")
        self.writer.writerow(header)
        self.rng = rng
        self.buffer: list[list[str]] = []
        self.rows = 0

    def write(self, row: list[str]) -> None:
        self.rows += 1
        if len(self.buffer) < 4096:
            self.buffer.append(row)
            return
        i = draw_below(self.rng, len(self.buffer))
        self.writer.writerow(self.buffer[i])
        self.buffer[i] = row

    def close(self) -> None:
        self.rng.shuffle(self.buffer)
        self.writer.writerows(self.buffer)
        self.buffer = []
        self.handle.close()


GP_HEADER: Final = (
    "PATIENT_ID",
    "NHS_NO",
    "FORENAME",
    "MIDDLE_NAMES",
    "SURNAME",
    "DOB",
    "SEX",
    "POSTCODE",
    "ADDRESS_LINE_1",
    "TOWN",
    "LTC_COUNT",
    "FRAILTY_INDEX",
    "AGE_BAND",
)
HOSPITAL_HEADER: Final = (
    "HOSP_NO",
    "NHS NUMBER",
    "PATIENT NAME",
    "D.O.B",
    "GENDER",
    "ADDRESS1",
    "POST CODE",
    "REG GP PRACTICE",
    "AE_ATTENDANCES_12M",
    "EMERGENCY_ADMISSIONS_12M",
)
OPTOUT_HEADER: Final = (
    "record_ref",
    "nhs_number",
    "family_name",
    "given_name",
    "date_of_birth",
    "postcode",
)


def gp_mapping(code: str, dob_format: str) -> str:
    return f"""# Mapping for gp_{code}.csv: a GP practice's registration extract (UTF-8).
[source]
format = "csv"
encoding = "utf-8"

[record]
id = "PATIENT_ID"

[identifiers]
nhs_number = "NHS_NO"
given_name = "FORENAME"
middle_names = "MIDDLE_NAMES"
family_name = "SURNAME"
date_of_birth = {{ column = "DOB", formats = ["{dob_format}"] }}
sex = "SEX"
postcode = "POSTCODE"
address_line = "ADDRESS_LINE_1"

[payload]
columns = ["LTC_COUNT", "FRAILTY_INDEX", "AGE_BAND"]
"""


HOSPITAL_MAPPING: Final = """# hospital.csv: an acute trust PAS export (Windows, cp1252).
[source]
format = "csv"
encoding = "cp1252"

[record]
id = "HOSP_NO"

[identifiers]
nhs_number = "NHS NUMBER"
full_name = { column = "PATIENT NAME", layout = "FAMILY, GIVEN" }
date_of_birth = { column = "D.O.B", formats = ["%d/%m/%Y"] }
sex = "GENDER"
postcode = "POST CODE"
address_line = "ADDRESS1"

[payload]
columns = ["AE_ATTENDANCES_12M", "EMERGENCY_ADMISSIONS_12M"]
"""

OPTOUT_MAPPING: Final = """# optout.csv: the national opt-out holder list (UTF-8 with a BOM).
[source]
format = "csv"
encoding = "utf-8-sig"

[record]
id = "record_ref"

[identifiers]
nhs_number = "nhs_number"
family_name = "family_name"
given_name = "given_name"
date_of_birth = { column = "date_of_birth", formats = ["%Y%m%d"] }
postcode = "postcode"
"""


# ---------------------------------------------------------------------------------------
# Rendering one person as one source records them
# ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Rendered:
    """A person's identifiers as one source holds them (before formatting)."""

    nhs: str | None
    given: str
    middles: list[str]
    family: str
    dob: date | None
    dob_placeholder: bool
    sex: str | None
    postcode: str | None
    line1: str
    tags: list[str]
    unknown: bool = False


class Emitter:
    """Applies a source's error rates to a person: what that source's row will hold."""

    def __init__(
        self,
        rng: random.Random,
        lists: Lists,
        params: SynthParams,
        nhs: NhsBook,
    ) -> None:
        self.rng = rng
        self.lists = lists
        self.params = params
        self.nhs = nhs

    def render(
        self,
        p: Person,
        address: Address,
        rates: ErrorRates,
        *,
        kind: DatasetKind,
        family_numbers: Sequence[str],
    ) -> _Rendered:
        rng = self.rng
        tags: list[str] = []
        # NHS number
        nhs: str | None = p.nhs
        roll = rng.random()
        if roll < rates.nhs_missing:
            nhs = None
            tags.append("nhs_missing")
        elif (roll := roll - rates.nhs_missing) < rates.nhs_placeholder:
            nhs = "0000000000"
            tags.append("nhs_placeholder")
        elif (roll := roll - rates.nhs_placeholder) < rates.nhs_mistyped:
            nhs = mistype_nhs(p.nhs, rng)
            tags.append("nhs_mistyped_valid" if nhs_valid(nhs) else "nhs_mistyped")
        elif roll - rates.nhs_mistyped < rates.nhs_wrong_valid:
            others = [n for n in family_numbers if n != p.nhs]
            nhs = draw(rng, others) if others else self.nhs.new()
            tags.append("nhs_wrong_valid")
        # Names
        family = p.family
        if p.name_stale == kind and p.previous_family is not None:
            family = p.previous_family
            tags.append("married_name")
        given = p.given
        nicknames = self.lists.nicknames.get(given)
        if nicknames and rng.random() < rates.nickname:
            given = draw(rng, nicknames)
            tags.append("nickname")
        middles = list(p.middles)
        if rng.random() < rates.name_typo:
            new = mistype_name(given, rng)
            if new != given:
                given = new
                tags.append("given_typo")
        if rng.random() < rates.name_typo:
            new = mistype_name(family, rng)
            if new != family:
                family = new
                tags.append("family_typo")
        if not "".join([given, family, *middles]).isascii():
            tags.append("has_diacritics")
            if rng.random() < rates.diacritics_dropped:
                expand = rng.random() < 0.3
                given = ascii_fold(given, expand=expand)
                family = ascii_fold(family, expand=expand)
                middles = [ascii_fold(m, expand=expand) for m in middles]
                tags.append("diacritics_dropped")
        if middles and rng.random() < rates.known_by_middle:
            given, middles = middles[0], []
            tags.append("known_by_middle")
        if middles and rng.random() < rates.middle_in_given:
            given = " ".join([given, *middles])
            middles = []
            tags.append("middle_in_given")
        if rng.random() < rates.name_swap:
            given, family = family, given
            tags.append("name_swap")
        # Date of birth
        dob: date | None = p.dob
        placeholder = False
        roll = rng.random()
        if roll < rates.dob_missing:
            dob = None
            tags.append("dob_missing")
        elif (roll := roll - rates.dob_missing) < rates.dob_placeholder:
            placeholder = True
            tags.append("dob_placeholder")
        elif roll - rates.dob_placeholder < rates.dob_typo:
            dob = mistype_dob(p.dob, rng, self.params.as_of)
            tags.append("dob_typo")
        else:
            swapped = swap_day_month(p.dob)
            if swapped is not None and rng.random() < rates.dob_swap:
                dob = swapped
                tags.append("dob_swap")
        # Sex
        sex: str | None = p.sex
        roll = rng.random()
        if roll < rates.sex_unknown:
            sex = None
            tags.append("sex_unknown")
        elif roll - rates.sex_unknown < rates.sex_wrong:
            sex = "F" if p.sex == "M" else "M"
            tags.append("sex_wrong")
        # Postcode
        postcode: str | None = address.postcode
        roll = rng.random()
        if roll < rates.postcode_missing:
            postcode = None
            tags.append("postcode_missing")
        elif roll - rates.postcode_missing < rates.postcode_typo:
            postcode = mistype_postcode(address.postcode, rng)
            tags.append("postcode_typo")
        rendered = _Rendered(nhs, given, middles, family, dob, placeholder, sex, postcode,
                             address.line1, tags)  # fmt: skip
        if rng.random() < rates.unknown_patient:
            rendered = _Rendered(None, "Unknown", [], "UNKNOWN", None, False, None,
                                 "ZZ99 3WZ", "", ["unknown_patient"], unknown=True)  # fmt: skip
        return rendered
