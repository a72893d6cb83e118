"""Tessera client SDK: what an organisation runs over its own extract."""

from __future__ import annotations

from client_sdk.local_index import LocalIndex
from client_sdk.mapping import Mapping, load_mapping
from client_sdk.opt_out import PermittedList, SourceOptOuts, load_permitted
from client_sdk.pipeline import iter_records
from client_sdk.quality import QualityCollector, QualityReport
from client_sdk.record import NormalisedRecord
from client_sdk.speclint import KeyLint, lint_spec
from client_sdk.tokenise import TokeniseParams, Tokeniser
from client_sdk.tokenise_batch import BatchSummary, tokenise_records, write_batch
from keys.spec import LinkageSpec, default_spec, load_spec

__all__ = [
    "BatchSummary",
    "KeyLint",
    "LinkageSpec",
    "LocalIndex",
    "Mapping",
    "NormalisedRecord",
    "PermittedList",
    "QualityCollector",
    "QualityReport",
    "SourceOptOuts",
    "TokeniseParams",
    "Tokeniser",
    "default_spec",
    "iter_records",
    "lint_spec",
    "load_mapping",
    "load_permitted",
    "load_spec",
    "tokenise_records",
    "write_batch",
]
