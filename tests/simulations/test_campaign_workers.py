"""A campaign survives a worker process that dies: the seed that killed it is named, the others
still count."""

from __future__ import annotations

import os

from simulations.campaign import Options, SeedResult, run_campaign

KILLER = 3


def dies_on_the_killer(seed: int, options: Options = None) -> SeedResult:
    """A stand-in for a seed that crashes the interpreter (native code, the OOM killer)."""
    if seed == KILLER:
        os._exit(70)
    return SeedResult(seed, True, (), {"operations": seed}, f"hash{seed}", 0.0)


def test_a_dead_worker_fails_its_seed_and_the_campaign_goes_on() -> None:
    seen: list[int] = []
    summary = run_campaign(
        range(1, 9), 2, worker=dies_on_the_killer, progress=lambda r: seen.append(r.seed)
    )
    assert [r.seed for r in summary.results] == list(range(1, 9))
    assert seen == list(range(1, 9))
    assert [r.seed for r in summary.failed] == [KILLER]
    assert "worker process died" in summary.failed[0].failures[0]
    assert all(r.trace_hash == f"hash{r.seed}" for r in summary.results if r.seed != KILLER)
    # The dead seed brought no counters back: it is a failure, not a seed of no operations.
    assert "min 1 per seed" in "\n".join(summary.lines())
