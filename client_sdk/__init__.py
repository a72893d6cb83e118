"""Tessera client SDK: what an organisation runs over its own extract."""

from __future__ import annotations

from client_sdk.local_index import LocalIndex
from client_sdk.speclint import KeyLint, lint_spec
from client_sdk.tokenise import (
    BatchSummary,
    TokeniseParams,
    Tokeniser,
    tokenise_records,
    write_batch,
)
from keys.spec import LinkageSpec, default_spec, load_spec

__all__ = [
    "BatchSummary",
    "KeyLint",
    "LinkageSpec",
    "LocalIndex",
    "TokeniseParams",
    "Tokeniser",
    "default_spec",
    "lint_spec",
    "load_spec",
    "tokenise_records",
    "write_batch",
]
