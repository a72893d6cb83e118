"""Readers: stream an extract as (line number, the mapped values), reporting bad rows.

``csv`` reads delimited text in any encoding; ``fhir`` reads FHIR R4 ``Patient`` resources
as NDJSON or a Bundle. Both hand each unusable row to a problem sink and go on.
"""

from __future__ import annotations

from client_sdk.readers.csv import read_csv
from client_sdk.readers.fhir import read_fhir

__all__ = ["read_csv", "read_fhir"]
