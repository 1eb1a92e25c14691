"""The scripted scenario on the real peer and relay: it converges, keeps both concurrent edits,
passes every invariant, and replays to the same trace."""

from __future__ import annotations

from simulations.harness import run_world
from simulations.scripted import three_devices


def test_scripted_scenario_converges_with_every_invariant() -> None:
    # A seed where both offline edits reach the relay before either device pulls the other's,
    # so the tree itself keeps both (otherwise the later device makes the conflicted copy on
    # its disk before publishing: tests/peer_sync/test_conflicts.py).
    outcome = run_world(6, three_devices)
    assert outcome.error is None, outcome.error + "\n" + outcome.trace_tail
    assert outcome.violations == []
    assert outcome.stats.convergence_s is not None
    assert outcome.stats.conflicts >= 1  # ada's and bob's offline edits: one wins, one a copy
    assert outcome.stats.bytes_relay > 0


def test_same_seed_same_trace() -> None:
    first = run_world(5, three_devices)
    second = run_world(5, three_devices)
    assert first.trace_hash == second.trace_hash
    assert first.ok
    assert second.ok
