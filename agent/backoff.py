"""Exponential back-off with full jitter, for reconnecting to managers."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from `base` up to `cap`, each drawn uniformly from its upper half
    (so many agents that lost the same manager do not come back in step)."""

    def __init__(
        self, base: float = 0.1, cap: float = 8.0, rng: random.Random | None = None
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"backoff needs 0 < base <= cap, not base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()
        self._attempt = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 64)
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0
