"""Run the installed ``tessera-sdk`` as a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.tokenise_world import DOMAIN, PASSPHRASE, Org

SDK = str(Path(sys.executable).with_name("tessera-sdk"))


def sdk(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``tessera-sdk ARGS…`` with the test organisation's passphrase; never raises on exit."""
    env = {**os.environ, "TESSERA_SDK_PASSPHRASE": PASSPHRASE}
    return subprocess.run(
        [SDK, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def tokenise_args(org: Org, data: Path, mapping: Path, out: Path, *, dataset: str) -> list[str]:
    """The arguments of ``tokenise`` for ``org`` (no progress bar)."""
    return [
        "tokenise", str(data), "--mapping", str(mapping), "--dir", str(org.directory),
        "--domain", DOMAIN, "--dataset", dataset, "--out", str(out), "--no-progress",
    ]  # fmt: skip


# Two people, and the mapping that reads them: the smallest extract that tokenises.
CSV = (
    "PATIENT_ID,FORENAME,SURNAME,DOB,SEX,POSTCODE\n"
    "1,Alice,Archer,1950-01-02,F,BA1 1AA\n"
    "2,Bob,Baker,1960-03-04,M,BA2 2BB\n"
)
MAPPING = """
[source]
format = "csv"
[record]
id = "PATIENT_ID"
[identifiers]
given_name = "FORENAME"
family_name = "SURNAME"
date_of_birth = { column = "DOB", formats = ["%Y-%m-%d"] }
sex = "SEX"
postcode = "POSTCODE"
"""
