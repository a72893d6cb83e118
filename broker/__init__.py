"""Tessera broker: the trusted third party's linkage service."""

from __future__ import annotations

__all__: list[str] = []
