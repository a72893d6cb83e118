"""Draws from one ``random.Random``, without the standard library's argument checks:
the generator's hot path.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import TypeVar

__all__ = [
    "draw",
    "draw_below",
    "draw_between",
    "draw_poisson",
]

_T = TypeVar("_T")


def draw_between(rng: random.Random, low: int, high: int) -> int:
    """``rng.randint`` without its argument checks: this is the hot path."""
    return low + int(rng.random() * (high - low + 1))


def draw_below(rng: random.Random, high: int) -> int:
    """``rng.randrange(high)``, likewise."""
    return int(rng.random() * high)


def draw(rng: random.Random, items: Sequence[_T]) -> _T:
    """``rng.choice`` without its bounds arithmetic: this is the hot path."""
    return items[int(rng.random() * len(items))]


def draw_poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    k = 0
    p = rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
