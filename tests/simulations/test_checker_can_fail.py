"""The checker is worth something only if it catches a broken network: prove it can fail.

Each broken variant below breaks TCP's promise once in a whole run (drops, duplicates or swaps one
frame on a "reliable" connection); the stream checker must catch it in every seed tried, and must
pass the same seeds on the correct network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from simulations.runtime import SimConnection, Simulation
from simulations.runtime.network import Link
from tests.simulations.chatter import StreamChecker, chatter

SEEDS = range(6)
BREAK_AT = 25  # the n-th data frame delivered in the run is the one mishandled

OnSegment = Callable[[SimConnection, Any, bytes, Link], None]


def _run(seed: int) -> StreamChecker:
    sim = Simulation.from_swarm(seed)
    return sim.run(chatter(sim))


def _break_delivery(monkeypatch: pytest.MonkeyPatch, mishandle: str) -> None:
    original: OnSegment = SimConnection.on_segment
    delivered = 0
    held: list[tuple[SimConnection, Any, bytes, Link]] = []

    def broken(self: SimConnection, kind: Any, payload: bytes, link: Link) -> None:
        nonlocal delivered
        if kind.value == "data":
            delivered += 1
            if delivered == BREAK_AT and mishandle == "drop":
                return
            if delivered == BREAK_AT and mishandle == "duplicate":
                original(self, kind, payload, link)
            if delivered == BREAK_AT and mishandle == "swap":
                held.append((self, kind, payload, link))
                return
            original(self, kind, payload, link)
            if held and held[0][0] is self:
                original(*held.pop())
            return
        original(self, kind, payload, link)

    monkeypatch.setattr(SimConnection, "on_segment", broken)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_correct_network_passes_the_checker(seed: int) -> None:
    checker = _run(seed)
    assert sum(len(got) for got in checker.received.values()) > BREAK_AT
    assert checker.violations() == []


@pytest.mark.parametrize("mishandle", ["drop", "duplicate", "swap"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_network_that_mishandles_one_frame_is_caught(
    monkeypatch: pytest.MonkeyPatch, mishandle: str, seed: int
) -> None:
    _break_delivery(monkeypatch, mishandle)
    violations = _run(seed).violations()
    assert len(violations) == 1, f"SEED={seed}: the checker missed a {mishandle}"
    assert "is not a prefix" in violations[0] or "closed cleanly after" in violations[0]
