"""Tessera client SDK: what an organisation runs over its own extract."""

from __future__ import annotations

__all__: list[str] = []
