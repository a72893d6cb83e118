"""Benchmark: read, normalise, validate and count a CSV extract (``make bench``).

Writes ``n`` synthetic rows (a hospital's cp1252-style layout: combined name column,
``dd/mm/yyyy`` dates, NHS numbers with spaces) to a temporary file, then times
:func:`client_sdk.pipeline.iter_records` with a quality collector, on one core.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from client_sdk.mapping import parse_mapping
from client_sdk.pipeline import iter_records
from client_sdk.quality import QualityCollector

__all__ = ["run"]

_GIVEN = ["William", "Bill", "Margaret", "Peggy", "Olivia", "Mohammed", "Seán", "Zoë", "Jan"]
_FAMILY = ["Smith", "O'Brien", "Smith-Jones", "McDonald", "Łukasik", "Patel", "Nguyen", "Khan"]
_MAPPING = {
    "source": {"format": "csv", "encoding": "utf-8"},
    "record": {"id": "HOSP_NO"},
    "identifiers": {
        "nhs_number": "NHS NUMBER",
        "full_name": {"column": "PATIENT NAME", "layout": "FAMILY, GIVEN"},
        "date_of_birth": {"column": "D.O.B", "formats": ["%d/%m/%Y"]},
        "sex": "GENDER",
        "postcode": "POST CODE",
    },
    "payload": {"columns": ["AE_ATTENDANCES_12M"]},
}


def _nhs_number(rng: random.Random) -> str:
    while True:
        digits = [rng.randrange(10) for _ in range(9)]
        check = 11 - sum(d * (10 - i) for i, d in enumerate(digits)) % 11
        if check == 11:
            check = 0
        if check != 10:
            text = "".join(map(str, digits)) + str(check)
            return f"{text[:3]} {text[3:6]} {text[6:]}"


def _write(path: Path, n: int, rng: random.Random) -> None:
    letters = "ABDEFGHJLNPQRSTUWXYZ"
    # About 40 people per postcode, as in a real region (UK: ~1.7 million postcodes).
    postcodes = [
        f"BA{rng.randint(1, 16)} {rng.randint(0, 9)}{rng.choice(letters)}{rng.choice(letters)}"
        for _ in range(max(100, n // 40))
    ]
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("HOSP_NO,NHS NUMBER,PATIENT NAME,D.O.B,GENDER,POST CODE,AE_ATTENDANCES_12M\r\n")
        for i in range(n):
            name = f"{rng.choice(_FAMILY).upper()}, {rng.choice(_GIVEN)}"
            dob = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1925, 2024)}"
            postcode = rng.choice(postcodes)
            out.write(
                f'H{i:08d},{_nhs_number(rng)},"{name}",{dob},{rng.choice("MF12U")},'
                f"{postcode},{rng.randint(0, 5)}\r\n"
            )


def run(n: int) -> dict[str, float]:
    """Time the pipeline over ``n`` synthetic rows.

    Returns:
        ``records_per_s`` (read + normalise + quality report, wall clock),
        ``records_per_cpu_s`` (the same per second of this process's CPU time, which a
        busy machine disturbs less) and ``rows``.
    """
    rng = random.Random(20261124)
    mapping = parse_mapping(_MAPPING)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "extract.csv"
        _write(path, n, rng)
        collector = QualityCollector()
        started, cpu_started = time.perf_counter(), time.process_time()
        count = sum(1 for _ in iter_records(path, mapping, report=collector))
        collector.report()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "records_per_s": count / elapsed,
        "records_per_cpu_s": count / cpu,
        "rows": float(count),
    }


if __name__ == "__main__":
    print(run(200_000))
