"""Shrinking a failing schedule: drop steps while the run still fails the same way.

Delta debugging, coarse to fine: try without each half, then each quarter, … then each single
step, keeping any removal after which the same invariant still fails. The environment (fault mix,
timer ties) stays the seed's; only the schedule gets shorter. Bounded by ``max_runs``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from simulations.harness import Outcome
from simulations.schedule import Schedule, Step


def failure_kinds(outcome: Outcome) -> set[str]:
    kinds = {v.invariant for v in outcome.violations}
    if outcome.error is not None:
        kinds.add("error")
    return kinds


def shrink(
    schedule: Schedule,
    run: Callable[[Schedule], Outcome],
    *,
    max_runs: int = 40,
    report: Callable[[str], object] = lambda _: None,
) -> tuple[Schedule, Outcome | None]:
    """The shortest failing schedule found, and its outcome (None if ``schedule`` passes)."""
    first = run(schedule)
    runs = 1
    target = failure_kinds(first)
    if not target:
        return schedule, None
    best, best_outcome = list(schedule.steps), first
    chunk = max(1, len(best) // 2)
    while chunk >= 1 and runs < max_runs:
        start = 0
        while start < len(best) and runs < max_runs:
            trial: list[Step] = best[:start] + best[start + chunk :]
            outcome = run(dataclasses.replace(schedule, steps=trial))
            runs += 1
            if failure_kinds(outcome) & target:
                best, best_outcome = trial, outcome
                report(f"shrunk to {len(best)} steps ({runs} runs)")
            else:
                start += chunk
        chunk //= 2
    return dataclasses.replace(schedule, steps=best), best_outcome
