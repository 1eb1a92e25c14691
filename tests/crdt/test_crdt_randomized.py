"""Seeded randomized runs: 3–5 replicas, out-of-order / dropped / duplicated delivery, anti-entropy.

A failing run names its seed; replay it with ``pytest tests/crdt -k randomized --seed N``.
"""

from __future__ import annotations

import pytest

from crdt.rules import ProjectionRules
from tests.crdt.crdt_sim import Sim, check_all, run_seed

FAST_SEEDS = range(40)
SLOW_SEEDS = range(1_000, 1_500)


def _seeds(request: pytest.FixtureRequest, default: range) -> list[int]:
    seed = request.config.getoption("--seed")
    return [seed] if seed is not None else list(default)


def _run(seed: int, steps: int) -> None:
    try:
        check_all(run_seed(seed, steps=steps))
    except AssertionError as exc:
        raise AssertionError(f"randomized run failed; replay with --seed {seed}: {exc}") from exc


def test_randomized_replicas_converge_without_loss(request: pytest.FixtureRequest) -> None:
    for seed in _seeds(request, FAST_SEEDS):
        _run(seed, steps=120)


@pytest.mark.slow
@pytest.mark.timeout(1_800)
def test_randomized_replicas_converge_without_loss_long(request: pytest.FixtureRequest) -> None:
    for seed in _seeds(request, SLOW_SEEDS):
        _run(seed, steps=300)


def _first_failing_seed(rules: ProjectionRules, seeds: range, **sim_options: object) -> int | None:
    for seed in seeds:
        sim = Sim(seed, n_replicas=3 + seed % 3, rules=rules, check_incremental=False,
                  check_events=False,
                  **sim_options)  # type: ignore[arg-type]
        try:
            sim.run(steps=200)
            check_all(sim)
        except AssertionError:
            return seed
    return None


# Moves only among a few folders make the cycle races that the other rules rarely produce.
CYCLE_HEAVY = {"weights": {"mkdir": 3, "move": 8, "create": 1}}


@pytest.mark.parametrize(
    ("flag", "options"),
    [
        ("cycle_skip", CYCLE_HEAVY),
        ("move_beats_delete", {}),
        ("edit_beats_delete", {}),
        ("revive_unseen", {}),
        ("conflicted_copies", {}),
        ("name_collisions", {}),
    ],
)
def test_each_rule_is_needed(flag: str, options: dict[str, object]) -> None:
    rules = ProjectionRules(**{flag: False})
    assert _first_failing_seed(rules, range(30), **options) is not None, (
        f"switching off {flag} should make a randomized run fail")


def test_same_seed_same_run() -> None:
    a, b = run_seed(7, steps=80), run_seed(7, steps=80)
    assert a.trees[0].listing() == b.trees[0].listing()
    assert a.trees[0].version_vector() == b.trees[0].version_vector()
