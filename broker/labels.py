"""Words for codes: what the register and the dashboard show an information governance lead.

Field codes (``AE_ATTENDANCES_12M``), organisation ids (``gp-a``), dataset ids
(``gp-a/registered``), audit actions (``batch.commit.append``), audit counters and match
key names (``nhs_dob``) each get a label in plain English. The code itself is kept
beside the label where someone may need to look it up (a field in an agreement, a key in
the linkage spec), so a label never hides what was shared.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from broker.store.identities import Identity

__all__ = [
    "ACTION_TEXT",
    "CONFIDENTIALITY_TEXT",
    "COUNT_TEXT",
    "FIELD_TEXT",
    "KEY_PART_TEXT",
    "Labels",
]

FIELD_TEXT: dict[str, str] = {
    "AE_ATTENDANCES_12M": "A&E attendances in the last 12 months",
    "EMERGENCY_ADMISSIONS_12M": "Emergency admissions in the last 12 months",
    "AGE_BAND": "Age band",
    "LTC_COUNT": "Number of long-term conditions",
    "LTC": "Long-term conditions",
    "FRAILTY_INDEX": "Frailty index",
}
"""Payload fields the shipped mappings and synthetic extracts use."""

_FIELD_WORDS: dict[str, str] = {
    "AE": "A&E",
    "LTC": "long-term condition",
    "GP": "GP",
    "NHS": "NHS",
    "ED": "emergency department",
    "12M": "in the last 12 months",
    "24M": "in the last 24 months",
    "NO": "number",
}

ACTION_TEXT: dict[str, str] = {
    "agreement.approve": "Agreement approved by an organisation",
    "agreement.create": "Agreement drafted",
    "agreement.revoke": "Agreement revoked",
    "audit.export": "Audit log exported",
    "batch.chunk": "Part of an upload received",
    "batch.commit.append": "Upload completed (records added)",
    "batch.commit.replace": "Upload completed (dataset replaced)",
    "batch.commit.retract": "Upload completed (records withdrawn)",
    "batch.linked.append": "Upload linked (records added)",
    "batch.linked.replace": "Upload linked (dataset replaced)",
    "batch.linked.retract": "Upload linked (records withdrawn)",
    "credential.issue": "New credential issued",
    "credential.revoke": "Credential revoked",
    "dashboard.login": "Signed in to the dashboard",
    "dataset.declare": "Dataset declared",
    "identity.add.org": "Organisation added",
    "identity.add.researcher": "Researcher added",
    "identity.add.auditor": "Auditor added",
    "identity.add.admin": "Administrator added",
    "keyblob.add": "Wrapped linkage key held for an organisation",
    "keyblob.download": "Wrapped linkage key fetched by its organisation",
    "publickey.register": "Organisation public key registered",
    "release": "Linked data released",
    "review.download": "Review list downloaded by its organisation",
}
"""Every audit action the broker writes."""

COUNT_TEXT: dict[str, tuple[str, str]] = {
    "chunk": ("part", "parts"),
    "chunks": ("part", "parts"),
    "records": ("record", "records"),
    "persons": ("person", "people"),
    "rows": ("row", "rows"),
    "cells": ("cell", "cells"),
    "suppressed": ("cell suppressed", "cells suppressed"),
    "fields": ("field", "fields"),
    "items": ("item to review", "items to review"),
}
"""Audit counters as (singular, plural) nouns."""

CONFIDENTIALITY_TEXT: dict[str, str] = {
    "s251": "Section 251 support (NHS Act 2006), on the advice of the Confidentiality "
    "Advisory Group",
    "consent": "Each person's explicit consent",
    "direct_care": "Implied consent for individual care",
    "statutory": "A statutory gateway or legal requirement",
    "public_interest": "An overriding public interest",
    "not_confidential": "Not confidential patient information",
}
"""How an agreement meets the common-law duty of confidentiality (``confidentiality_basis``)."""

KEY_PART_TEXT: dict[str, str] = {
    "nhs": "NHS number",
    "dob": "date of birth",
    "swapdob": "date of birth (day and month swapped)",
    "given": "given name",
    "family": "family name",
    "initial": "initial",
    "phonetic": "names by sound",
    "postcode": "postcode",
    "district": "postcode district",
    "sector": "postcode sector",
    "sex": "sex",
    "name": "name",
}
"""Words of match key names (``given_family_dob_postcode``)."""

_DATASET_ID = re.compile(r"\b([A-Za-z0-9][A-Za-z0-9._-]{0,63})/([A-Za-z0-9][A-Za-z0-9._-]{0,63})\b")


def _field_words(code: str) -> str:
    words = [_FIELD_WORDS.get(part, part.lower()) for part in code.split("_") if part]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


@dataclass(frozen=True, slots=True)
class Labels:
    """Labels for one page, knowing the organisations' display names and ODS codes.

    Args:
        organisations: organisation name -> identity (``admin org add --name --ods``).
    """

    organisations: dict[str, Identity] = field(default_factory=dict)

    @classmethod
    def of(cls, identities: Iterable[Identity]) -> Labels:
        """Labels knowing these identities (only organisations are used)."""
        return cls({i.name: i for i in identities if i.role.value == "org"})

    def org(self, name: str) -> str:
        """``Riverside Surgery (ODS L85540)``, or the name when none was given."""
        identity = self.organisations.get(name)
        return name if identity is None else identity.label

    def dataset(self, dataset_id: str) -> str:
        """``gp-a/registered`` as ``registered, Riverside Surgery (ODS L85540)``."""
        org, _, name = dataset_id.partition("/")
        return f"{name}, {self.org(org)}" if name else self.org(org)

    def text(self, text: str) -> str:
        """Every dataset id inside ``text`` (chart labels such as ``a/x|b/y``) labelled."""
        labelled = _DATASET_ID.sub(lambda m: self.dataset(m.group(0)), text)
        return labelled.replace("|", " and ")

    def field(self, code: str) -> str:
        """A payload field in words; an unknown code is spelt out from its parts."""
        bare = code.rpartition(".")[2]
        return FIELD_TEXT.get(bare) or _field_words(bare)

    def action(self, code: str) -> str:
        """An audit action in words (an unknown one is shown as it is)."""
        return ACTION_TEXT.get(code, code)

    def counts(self, text: str) -> str:
        """``chunks 3, records 90`` (the dashboard's audit counters) as ``3 parts, 90 records``."""
        out: list[str] = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, _, value = item.rpartition(" ")
            nouns = COUNT_TEXT.get(key)
            if nouns is None or not value.replace(",", "").isdigit():
                out.append(item)
                continue
            singular, plural = nouns
            if key == "chunk":
                out.append(f"part {int(value.replace(',', '')) + 1}")
            else:
                out.append(f"{value} {singular if value == '1' else plural}")
        return ", ".join(out)

    def key(self, name: str) -> str:
        """A match key name in words: ``nhs_dob`` as ``NHS number + date of birth``."""
        parts = [KEY_PART_TEXT.get(p, p) for p in name.split("_") if p]
        return " + ".join(parts) if parts else name
