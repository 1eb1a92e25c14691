"""Running one world for one seed: scratch space, the run, the checks, the outcome.

A script is ``async def script(world: World, stats: Stats) -> None``: it builds the devices and the
share, drives users and faults, and heals. The harness then waits for quiescence, runs the final
checks and stops everything; the trace ends with ``trace: <hash>``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from crdt.view import EntryKind
from peer.fs.errors import SimulatedCrash
from simulations.invariants import Ledger, Violation, check_continuous, check_final
from simulations.runtime.faults import LinkKind
from simulations.runtime.simulation import Simulation
from simulations.world import World

QUIESCE_LIMIT_S = 400.0
SHM = Path("/dev/shm")


@dataclass
class Stats:
    """What a run did, for the campaign summary."""

    operations: int = 0
    partitions: int = 0
    partition_s: float = 0.0
    crashes: int = 0
    conflicts: int = 0
    cycles_attempted: int = 0
    edit_delete_races: int = 0
    removals: int = 0
    rotations: int = 0  # removals followed by a new key epoch
    restores: int = 0
    convergence_s: float | None = None
    bytes_lan: int = 0
    bytes_relay: int = 0


@dataclass
class Outcome:
    seed: int
    violations: list[Violation]
    stats: Stats
    trace_hash: str
    trace_tail: str = ""
    error: str | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations and self.error is None


Script = Callable[[World, Stats], Awaitable[None]]


class Checker:
    """Runs the continuous checks whenever the script asks, collecting what fails."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.ledger = Ledger()
        self.violations: list[Violation] = []

    async def check(self) -> None:
        world = self.world
        if world.share is None or world.relay is None:
            return
        found = await check_continuous(
            [world.devices[n] for n in sorted(world.devices)],
            world.share,
            world.relay,
            self.ledger,
            world.written,
        )
        for violation in found:
            world.trace.record("-", "violation", what=str(violation))
        self.violations += found


def scratch_dir() -> Path:
    """Per-run scratch space (device homes' small files, the relay's block directory); tmpfs
    when there is one, so their fsyncs cost nothing."""
    base = SHM if SHM.is_dir() else None
    return Path(tempfile.mkdtemp(prefix="drift-sim-", dir=base))


def run_world(
    seed: int,
    script: Script,
    *,
    sim: Simulation | None = None,
    sink: TextIO | None = None,
    quiesce_limit_s: float = QUIESCE_LIMIT_S,
    keep_lines: bool = False,
) -> Outcome:
    sim = sim or Simulation(seed, trace_sink=sink)
    scratch = scratch_dir()
    stats = Stats()
    world = World(sim, scratch)
    checker = Checker(world)
    world.checker = checker

    async def main() -> list[Violation]:
        await world.start_relay()
        await script(world, stats)
        sim.net.heal()
        for device in world.members():
            if device.fs.crashed:  # a crash point fired after the schedule's last look
                await device.crash()
            device.restart()
        stats.convergence_s = await world.quiesce(quiesce_limit_s)
        violations = list(checker.violations)
        if stats.convergence_s is None:
            violations.append(Violation("quiescence", f"no convergence in {quiesce_limit_s} s"))
            _record_not_synced(world)
        assert world.share is not None
        assert world.relay is not None
        violations += await check_final(
            [world.devices[n] for n in sorted(world.devices)],
            world.share,
            world.relay,
            checker.ledger,
            world.written,
            {r.user: r.chain_height for r in world.removals},
            {r.user: r.rotated_to for r in world.removals if r.rotated_to is not None},
        )
        for violation in violations:
            world.trace.record("-", "violation", what=str(violation))
        _count_traffic(world, stats)
        members = world.members()
        if members and members[0].node is not None:
            tree = members[0].share_sync(world.share).tree
            stats.conflicts = sum(1 for _, e in tree.walk() if e.kind is EntryKind.CONFLICTED_COPY)
            world.trace.record(
                "-", "world.final", entries=len(tree.listing()), conflicted_copies=stats.conflicts
            )
        for name in sorted(world.devices):
            await world.devices[name].stop()
        for name in sorted(world.devices):
            await world.devices[name].close_links()
        await world.relay.stop()
        return violations

    capture = _TraceLogs(sim)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    root.handlers[:] = [capture]
    root.setLevel(logging.WARNING)
    try:
        violations = sim.run(main())
        error = None
    except (Exception, SimulatedCrash) as exc:  # the run broke: a failure of the seed
        violations, error = [], f"{type(exc).__name__}: {exc}"
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        shutil.rmtree(scratch, ignore_errors=True)
    return Outcome(
        seed,
        violations,
        stats,
        sim.trace_hash,
        sim.trace.tail(60),
        error,
        sim.trace.lines if keep_lines else [],
    )


def _record_not_synced(world: World) -> None:
    """Why each device is not in sync, as its ``drift status`` would say, into the trace."""
    assert world.share is not None
    for device in world.members():
        if device.node is None or world.share not in device.node.syncs:
            continue
        sync = device.node.syncs[world.share]
        status = sync.status(str(device.folder))
        world.trace.record(device.name, "status", state=status.state.value, reason=status.reason)
        for path, why in sorted(status.not_synced.items()):
            world.trace.record(device.name, "not_synced", path=path, why=why[:200])
        # One entry synced at two paths: the device keeps a stale copy nobody else has.
        rows: dict[str, list[str]] = {}
        for path, synced in sync.store.files().items():
            rows.setdefault(synced.entry, []).append(path)
        for entry, paths in sorted(rows.items()):
            if len(paths) > 1:
                world.trace.record(
                    device.name, "entry_at_two_paths", entry=entry, paths=sorted(paths)
                )


class _TraceLogs(logging.Handler):
    """The peer's and relay's warnings go into the run's trace (they replay with it) instead of
    the terminal."""

    def __init__(self, sim: Simulation) -> None:
        super().__init__(logging.WARNING)
        self.trace = sim.trace

    def emit(self, record: logging.LogRecord) -> None:
        self.trace.record("log", record.name, message=record.getMessage()[:300])


def _count_traffic(world: World, stats: Stats) -> None:
    by_kind = world.sim.net.counters_by_kind()
    stats.bytes_lan = by_kind[LinkKind.LAN].bytes_delivered
    stats.bytes_relay = by_kind[LinkKind.WAN].bytes_delivered
