"""HTTP routers of the broker, one per resource; each route parses, authorises, calls one
domain function and returns a wire model."""

from __future__ import annotations

__all__: list[str] = []
