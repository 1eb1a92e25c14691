"""LAN peers in the simulation: the real DeviceLan over the in-memory network.

Two devices on one LAN segment keep syncing while the relay is unreachable, and the relay is
caught up after it comes back; a removed member's device on the same segment gets nothing written
after its removal; and a run with LAN traffic replays to the same trace.
"""

from __future__ import annotations

import asyncio

from simulations.harness import Outcome, Stats, run_world
from simulations.relayhost import RELAY_HOST
from simulations.scenario import run_seed
from simulations.world import World

OUTAGE_S = 60.0
SETTLE_S = 120.0


def _context(outcome: Outcome) -> str:
    return f"seed {outcome.seed}: {outcome.error} {outcome.violations}\n{outcome.trace_tail}"


async def _settle(world: World, stats: Stats, ops: int) -> None:
    stats.operations += ops
    assert await world.quiesce(SETTLE_S) is not None
    await world.checkpoint()


def test_lan_neighbours_sync_while_the_relay_is_unreachable_then_catch_it_up() -> None:
    seen_offline: list[bytes | None] = []

    async def script(world: World, stats: Stats) -> None:
        laptop = world.add_device("laptop", user="ada", lan="home")
        desk = world.add_device("desk", user="bob", lan="home")
        await world.create_share(laptop, [desk])
        world.start_all()
        world.write(laptop, "plan.txt", b"plan v1\n")
        await _settle(world, stats, 1)

        world.sim.net.isolate(RELAY_HOST)
        stats.partitions += 1
        # Both write while the relay is away: each one's envelopes see the other's, and the
        # first version of the laptop's file is gone from its disk before the relay is back.
        world.write(laptop, "notes.md", b"# notes v1\n" * 50)
        await asyncio.sleep(10)
        world.write(desk, "todo.txt", b"- ship it\n")
        world.write(laptop, "notes.md", b"# notes v2\n" * 60)
        await asyncio.sleep(OUTAGE_S)
        seen_offline.append(world.read(desk, "notes.md"))
        seen_offline.append(world.read(laptop, "todo.txt"))
        await world.checkpoint()
        stats.operations += 3

    outcome = run_world(3, script)
    assert outcome.ok, _context(outcome)
    assert seen_offline == [b"# notes v2\n" * 60, b"- ship it\n"]
    assert outcome.stats.bytes_lan > 0
    assert outcome.stats.convergence_s is not None


def test_a_removed_member_on_the_same_lan_gets_nothing_new() -> None:
    leaked: list[bytes | None] = []

    async def script(world: World, stats: Stats) -> None:
        laptop = world.add_device("laptop", user="ada", lan="home")
        pc = world.add_device("pc", user="cy", lan="home")
        await world.create_share(laptop, [pc])
        world.start_all()
        world.write(laptop, "shared.txt", b"for everyone\n")
        await _settle(world, stats, 1)
        assert world.read(pc, "shared.txt") == b"for everyone\n"

        await world.remove_user(laptop, "cy")
        stats.removals += 1
        world.sim.net.isolate(RELAY_HOST)  # the LAN is the only way left to reach cy's pc
        world.write(laptop, "secret.txt", b"not for cy\n")
        world.write(laptop, "shared.txt", b"for everyone but cy\n")
        stats.operations += 2
        await asyncio.sleep(OUTAGE_S)
        leaked.append(world.read(pc, "secret.txt"))
        leaked.append(world.read(pc, "shared.txt"))
        await world.checkpoint()

    outcome = run_world(4, script)
    assert outcome.ok, _context(outcome)
    assert leaked == [None, b"for everyone\n"]


def test_a_seed_with_lan_traffic_replays_to_the_same_trace() -> None:
    first = run_seed(1)
    second = run_seed(1)
    assert first.ok, _context(first)
    assert first.stats.bytes_lan > 0
    assert first.trace_hash == second.trace_hash
