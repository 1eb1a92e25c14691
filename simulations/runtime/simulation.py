"""One seeded run: the random streams, trace, network, fault points and clocks it shares.

    sim = Simulation.from_swarm(seed)          # or Simulation(seed, faults=NetFaults(...))
    relay = sim.net.add_host("relay")
    laptop = sim.net.add_host("laptop", lan="home")
    result = sim.run(scenario(sim))            # ends the trace with "trace: <hash>"

Every component draws from its own ``sim.random(label)`` fork, so a new draw in one never shifts
another's; ``swarm(seed)`` derives the whole fault mix from the seed, tigerbeetle style.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

from seams import NO_BUGGIFY, Buggify, SeededRandom
from simulations.runtime.buggify import SeededBuggify
from simulations.runtime.clock import DEFAULT_EPOCH_MS, SimClock
from simulations.runtime.faults import NetFaults, swarm_faults
from simulations.runtime.loop import DEFAULT_BUDGET_S, DEFAULT_MAX_ITERATIONS, Ties, run
from simulations.runtime.network import SimNetwork
from simulations.runtime.seed import DEFAULT_REPLAY
from simulations.runtime.trace import GLOBAL_HOST, Trace

T = TypeVar("T")


@dataclass(frozen=True)
class SwarmOptions:
    """Everything a seed decides about a run's environment, logged at its start."""

    seed: int
    faults: NetFaults = field(default_factory=NetFaults)
    buggify_activation_p: float = 0.25
    buggify_fire_p: float = 0.25
    ties: Ties = "fifo"

    def describe(self) -> list[str]:
        return [
            f"SEED={self.seed}",
            f"ties={self.ties}",
            f"buggify_activation_p={self.buggify_activation_p:.3f}",
            f"buggify_fire_p={self.buggify_fire_p:.3f}",
            *self.faults.describe(),
        ]


def swarm(seed: int) -> SwarmOptions:
    """Draw a run's options from its seed (``options_swarm``): fault mix, fault-point rates and
    whether simultaneous timers fire in a seeded order."""
    rng = SeededRandom(seed).fork("swarm")
    faults = swarm_faults(rng.fork("faults"))
    buggify_on = rng.uniform(0.0, 1.0) < 0.8
    activation = rng.uniform(0.05, 0.5) if buggify_on else 0.0
    fire = rng.uniform(0.01, 0.3)
    ties: Ties = "seeded" if rng.uniform(0.0, 1.0) < 0.5 else "fifo"
    return SwarmOptions(seed, faults, activation, fire, ties)


class Simulation:
    def __init__(
        self,
        seed: int,
        *,
        faults: NetFaults | None = None,
        buggify_activation_p: float = 0.0,
        buggify_fire_p: float = 0.25,
        ties: Ties = "fifo",
        budget_s: float | None = DEFAULT_BUDGET_S,
        max_iterations: int | None = DEFAULT_MAX_ITERATIONS,
        epoch_ms: int = DEFAULT_EPOCH_MS,
        trace_keep: int | None = 100_000,
        trace_sink: TextIO | None = None,
        replay: str = DEFAULT_REPLAY,
    ) -> None:
        self.seed = seed
        self.rng = SeededRandom(seed)
        self.trace = Trace(keep=trace_keep, sink=trace_sink)
        self.net = SimNetwork(self.rng.fork("net"), faults, self.trace)
        self.buggify: Buggify = (
            SeededBuggify(
                self.rng.fork("buggify"),
                activation_p=buggify_activation_p,
                fire_p=buggify_fire_p,
                trace=self.trace,
            )
            if buggify_activation_p > 0.0
            else NO_BUGGIFY
        )
        self.ties: Ties = ties
        self.budget_s = budget_s
        self.max_iterations = max_iterations
        self.epoch_ms = epoch_ms
        self.replay = replay

    @classmethod
    def from_swarm(cls, seed: int, **kwargs: Any) -> Simulation:
        options = swarm(seed)
        sim = cls(
            seed,
            faults=options.faults,
            buggify_activation_p=options.buggify_activation_p,
            buggify_fire_p=options.buggify_fire_p,
            ties=options.ties,
            **kwargs,
        )
        for line in options.describe():
            sim.trace.record(GLOBAL_HOST, "option", value=line)
        return sim

    def random(self, label: str) -> SeededRandom:
        """An independent random stream for one component (a device, the relay, a workload)."""
        return self.rng.fork(f"user/{label}")

    def clock(self, skew_ms: int = 0) -> SimClock:
        return SimClock(self.epoch_ms, skew_ms)

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` on a fresh virtual-time loop; the trace ends with ``trace: <hash>``. On
        failure the error carries ``SEED=N``, the replay command and the trace's last lines."""
        self.trace.record(GLOBAL_HOST, "run.start", seed=self.seed)
        try:
            result = run(
                main,
                seed=self.seed,
                budget_s=self.budget_s,
                max_iterations=self.max_iterations,
                ties=self.ties,
            )
        except BaseException as exc:
            self.trace.record(GLOBAL_HOST, "run.failed", error=type(exc).__name__)
            exc.add_note(f"replay: {self.replay.format(seed=self.seed)}")
            exc.add_note("last trace lines:\n" + self.trace.tail())
            exc.add_note(self.trace.finish())
            raise
        self.trace.record(GLOBAL_HOST, "run.end")
        self.trace.finish()
        return result

    @property
    def trace_hash(self) -> str:
        return self.trace.digest
