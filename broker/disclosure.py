"""Statistical disclosure control profiles: what an aggregate shows of each count.

An agreement names a published rule (``sdc_profile``), and every count of its aggregate
table, cell, margin and total alike, goes through it (docs/agreements.md cites each
source):

* ``nhse-hes``: NHS England's rule for Hospital Episode Statistics and the Emergency Care
  Data Set below national level: 0 is shown as 0, 1 to 7 are suppressed, every other
  count is rounded to the nearest 5.
* ``opensafely``: OpenSAFELY's output rules: counts of 7 or fewer are redacted, then
  every count is rounded, to the nearest 5 (``nearest-5``, the platform's default) or
  to "midpoint 6" (``midpoint-6``: up to a multiple of 6, less 3, so 8 to 12 show as 9).
* ``threshold``: counts from 1 to N - 1 are suppressed, the rest shown exactly.

A profile decides only what one count becomes. The table-wide part, secondary suppression
so that no suppressed count can be worked out from the margins and totals, is
:func:`broker.release.protect_table`, run with the profile's :attr:`~DisclosureProfile.
smallest_shown`; the counts it leaves published are then rounded by the profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from keys.wire_release import AgreementTerms, OpenSafelyRounding, SdcProfile

__all__ = [
    "HES_SUPPRESS_UP_TO",
    "NEAREST_BASE",
    "OPENSAFELY_MIDPOINT_WIDTH",
    "OPENSAFELY_REDACT_UP_TO",
    "CountRounding",
    "DisclosureProfile",
    "profile_of",
    "round_midpoint",
    "round_nearest",
]

HES_SUPPRESS_UP_TO = 7
"""NHS England HES/ECDS: counts from 1 to this are suppressed."""
OPENSAFELY_REDACT_UP_TO = 7
"""OpenSAFELY: counts up to this (``<= 7``) are redacted."""
NEAREST_BASE = 5
"""Both NHS England's HES/ECDS rule and OpenSAFELY's round shown counts to the nearest 5."""
OPENSAFELY_MIDPOINT_WIDTH = 6
"""OpenSAFELY's midpoint rounding: bins of 6, each shown as its midpoint."""


def round_nearest(count: int, base: int) -> int:
    """``count`` rounded to the nearest multiple of ``base``, halves up (for base 5 no
    integer is a half-way case)."""
    return (count + base // 2) // base * base


def round_midpoint(count: int, width: int) -> int:
    """OpenSAFELY's ``roundmid_any``: ``ceiling(x / width) * width - floor(width / 2)``
    for ``x`` above 0, and 0 for 0 (width 6: 1-6 show as 3, 7-12 as 9, 13-18 as 15)."""
    if count <= 0:
        return 0
    return -(-count // width) * width - width // 2


class CountRounding(StrEnum):
    """How a profile rounds the counts it shows."""

    EXACT = "exact"
    NEAREST_5 = "nearest-5"
    MIDPOINT_6 = "midpoint-6"


@dataclass(frozen=True, slots=True)
class DisclosureProfile:
    """One published rule for the counts of an aggregate.

    Attributes:
        name: the profile the agreement names.
        smallest_shown: counts from 1 to ``smallest_shown - 1`` are suppressed (primary
            suppression); 0 is always shown.
        rounding: how shown counts are rounded.
        rule: the rule in one line, named in every aggregate it protects.
    """

    name: SdcProfile
    smallest_shown: int
    rounding: CountRounding
    rule: str

    def shown(self, count: int) -> int | None:
        """What the profile shows for ``count``: ``None`` when it is suppressed.

        This is primary suppression and rounding of one count; secondary suppression is
        the table's (:func:`broker.release.protect_table`).
        """
        if count == 0:
            return 0
        if count < self.smallest_shown:
            return None
        return self.published(count)

    def published(self, count: int) -> int:
        """``count`` as shown once the table has left it published (rounded, if the
        profile rounds)."""
        if self.rounding is CountRounding.NEAREST_5:
            return round_nearest(count, NEAREST_BASE)
        if self.rounding is CountRounding.MIDPOINT_6:
            return round_midpoint(count, OPENSAFELY_MIDPOINT_WIDTH)
        return count


def profile_of(terms: AgreementTerms) -> DisclosureProfile | None:
    """The disclosure-control profile an agreement names, or ``None`` when it names none
    (its ``aggregate_control`` then applies, as before profiles)."""
    if terms.sdc_profile is SdcProfile.NHSE_HES:
        return DisclosureProfile(
            name=SdcProfile.NHSE_HES,
            smallest_shown=HES_SUPPRESS_UP_TO + 1,
            rounding=CountRounding.NEAREST_5,
            rule="NHS England HES/ECDS: 0 shown as 0, 1-7 suppressed, others rounded to "
            "the nearest 5",
        )
    if terms.sdc_profile is SdcProfile.OPENSAFELY:
        midpoint = terms.sdc_rounding is OpenSafelyRounding.MIDPOINT_6
        rounding = CountRounding.MIDPOINT_6 if midpoint else CountRounding.NEAREST_5
        how = (
            "rounded to midpoint 6 (8-12 shown as 9, 13-18 as 15, ...)"
            if midpoint
            else "rounded to the nearest 5"
        )
        return DisclosureProfile(
            name=SdcProfile.OPENSAFELY,
            smallest_shown=OPENSAFELY_REDACT_UP_TO + 1,
            rounding=rounding,
            rule=f"OpenSAFELY: counts of 7 or fewer redacted, others {how}",
        )
    if terms.sdc_profile is SdcProfile.THRESHOLD:
        threshold = terms.sdc_threshold if terms.sdc_threshold is not None else terms.min_cell_size
        return DisclosureProfile(
            name=SdcProfile.THRESHOLD,
            smallest_shown=threshold,
            rounding=CountRounding.EXACT,
            rule=f"threshold {threshold}: counts from 1 to {threshold - 1} suppressed, "
            "others exact",
        )
    return None
