"""All Redis access of the broker."""

from __future__ import annotations

__all__: list[str] = []
