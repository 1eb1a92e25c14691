"""Fault points inside real code (FoundationDB's BUGGIFY), as a seam.

Production code is handed a ``Buggify`` and writes ``if self.buggify("relay.put.fail"): raise``.
Outside simulations it gets ``NO_BUGGIFY``, which never fires; a simulation passes a seeded one
(``simulations.runtime.SeededBuggify``) so rare paths run in many seeds.
"""

from __future__ import annotations

from typing import Protocol


class Buggify(Protocol):
    enabled: bool

    def __call__(self, site: str) -> bool:
        """True when the fault at ``site`` should happen now."""
        ...


class NoBuggify:
    """Production: no fault point ever fires."""

    enabled = False

    def __call__(self, site: str) -> bool:
        return False


NO_BUGGIFY = NoBuggify()
