"""Exponential backoff with jitter (half fixed, half random), drawn from the injected source."""

from __future__ import annotations

from dataclasses import dataclass

from seams import RandomSource


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 0.2
    cap_s: float = 30.0
    attempts: int = 6  # tries per request before the error reaches the caller

    def delay(self, attempt: int, rng: RandomSource) -> float:
        """Wait before try ``attempt`` (from 1): uniform in [c/2, c], c = min(cap, base·2^n)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** max(0, attempt - 1)))
        return rng.uniform(ceiling / 2, ceiling)


DEFAULT_BACKOFF = Backoff()
