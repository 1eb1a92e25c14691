"""Randomness as a seam: every random byte sync code uses is drawn from one of these.

libsodium draws its own randomness for a few constructions (key generation inside PyNaCl's
``SigningKey.generate``); callers that need determinism generate seeds here and derive keys from
them instead.
"""

from __future__ import annotations

import os
import random as _random
import secrets
from typing import Protocol


class RandomSource(Protocol):
    def bytes(self, n: int) -> bytes: ...

    def uniform(self, low: float, high: float) -> float:
        """For jitter and fault injection, never for secrets."""
        ...


class OsRandom:
    """The operating system's CSPRNG."""

    def bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * (secrets.randbits(53) / (1 << 53))


class SeededRandom:
    """A reproducible source for simulations and tests: same seed, same bytes.

    Not cryptographically secure, by design: it exists so a failing run replays exactly.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = _random.Random(seed)

    def bytes(self, n: int) -> bytes:
        return self._rng.randbytes(n)

    def uniform(self, low: float, high: float) -> float:
        return self._rng.uniform(low, high)

    def fork(self, label: str) -> SeededRandom:
        """An independent stream per component: a new draw in one never shifts the others."""
        return SeededRandom(_random.Random(f"{self.seed}/{label}").getrandbits(64))
