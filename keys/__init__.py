"""Tessera key management and the contract shared by the SDK and the broker."""

from __future__ import annotations

__all__: list[str] = []
