"""Synthetic Somerset data for demos, tests and benchmarks: not part of the organisation SDK.

Installed from a checkout as its own distribution ``tessera-synth``
(``pip install '.[sdk]' ./synth``), so the SDK an organisation installs carries neither the
generator nor its name lists. It may use ``client_sdk`` and ``keys``; neither uses it.
"""

from __future__ import annotations

from tessera_synth.generator import generate
from tessera_synth.params import (
    HOSPITAL_ERRORS,
    MAX_PRACTICES,
    OPTOUT_ERRORS,
    DatasetKind,
    DatasetSummary,
    ErrorRates,
    SynthParams,
    SynthSummary,
)

__all__ = [
    "HOSPITAL_ERRORS",
    "MAX_PRACTICES",
    "OPTOUT_ERRORS",
    "DatasetKind",
    "DatasetSummary",
    "ErrorRates",
    "SynthParams",
    "SynthSummary",
    "generate",
]
