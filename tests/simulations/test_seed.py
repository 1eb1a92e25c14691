"""Seeds: replay one with --seed, print SEED=N and the replay command on failure."""

from __future__ import annotations

import asyncio

import pytest

from simulations.runtime import (
    DEFAULT_EPOCH_MS,
    NO_BUGGIFY,
    Deadlock,
    SeededBuggify,
    Simulation,
    parse_seed,
    replay_hint,
    run_seeds,
    seeds_to_run,
)


def test_seed_comes_from_the_command_line_or_is_fresh() -> None:
    assert parse_seed(["--seed", "42", "--other", "x"]) == 42
    fresh = {parse_seed([]) for _ in range(5)}
    assert len(fresh) == 5
    assert all(0 <= seed < 2**63 for seed in fresh)


def test_seeds_to_run_replays_one_or_runs_a_range() -> None:
    assert seeds_to_run(None, 3) == [0, 1, 2]
    assert seeds_to_run(None, 2, first=100) == [100, 101]
    assert seeds_to_run(77, 50) == [77]


def test_run_seeds_names_the_failing_seed_and_how_to_replay_it() -> None:
    printed: list[str] = []

    def scenario(seed: int) -> int:
        if seed == 3:
            raise AssertionError("trees differ")
        return seed * 2

    assert run_seeds(scenario, [0, 1], out=printed.append) == [0, 2]
    with pytest.raises(AssertionError) as caught:
        run_seeds(scenario, range(10), replay="pytest tests/sim --seed {seed}", out=printed.append)
    assert printed == [
        "simulation failed: AssertionError: trees differ\nSEED=3\nreplay: pytest tests/sim --seed 3"
    ]
    assert caught.value.__notes__ == ["SEED=3", "replay: pytest tests/sim --seed 3"]
    assert replay_hint(9) == "SEED=9\nreplay: python -m simulations --seed 9"


def test_a_failed_simulation_carries_seed_replay_and_the_last_trace_lines() -> None:
    sim = Simulation(31, replay="drift simulate --seed {seed}")

    async def stuck() -> None:
        sim.net.add_host("a")
        await asyncio.Event().wait()

    with pytest.raises(Deadlock) as caught:
        sim.run(stuck())
    notes = caught.value.__notes__
    assert notes[0] == "SEED=31"
    assert notes[1] == "replay: drift simulate --seed 31"
    assert "net.host lan=-" in notes[2]
    assert notes[3] == sim.trace.final_line()


def test_a_simulation_hands_out_independent_streams_clocks_and_fault_points() -> None:
    sim = Simulation(8, buggify_activation_p=0.5)
    assert sim.random("a").bytes(8) == Simulation(8).random("a").bytes(8)
    assert sim.random("a").bytes(8) != sim.random("b").bytes(8)
    assert isinstance(sim.buggify, SeededBuggify)
    assert Simulation(8).buggify is NO_BUGGIFY

    async def main() -> int:
        await asyncio.sleep(2)
        return sim.clock(skew_ms=5).now_ms()

    assert sim.run(main()) == DEFAULT_EPOCH_MS + 2005
    assert sim.trace.lines[-1].endswith("run.end")


def test_a_swarm_simulation_logs_every_option_first() -> None:
    sim = Simulation.from_swarm(12)
    options = [line for line in sim.trace.lines if " option " in line]
    assert options[0].endswith("value=SEED=12")
    assert any("value=loss=" in line for line in options)
