"""The scripted scenario: three devices of two users, a relay outage, concurrent edits.

Ada has a laptop and a phone, Bob a desktop. They share a folder; everyone edits, renames, moves
and deletes; then the relay becomes unreachable while Ada's laptop and Bob's desktop edit the same
file and the phone deletes a photo Bob renames; the relay comes back, and every device must end
with the same tree, the concurrent edits kept (one wins, the other a conflicted copy).
"""

from __future__ import annotations

import asyncio

from simulations.harness import Outcome, Stats, run_world
from simulations.relayhost import RELAY_HOST
from simulations.world import World

OUTAGE_S = 120.0
SETTLE_LIMIT_S = 300.0


async def three_devices(world: World, stats: Stats) -> None:
    laptop = world.add_device("laptop", user="ada", lan="home")
    phone = world.add_device("phone", user="ada")
    desk = world.add_device("desk", user="bob", lan="office")
    await world.create_share(laptop, [phone, desk])
    world.start_all()

    async def step(ops: int) -> None:
        stats.operations += ops
        await world.quiesce(SETTLE_LIMIT_S)
        await world.checkpoint()

    world.write(laptop, "docs/plan.txt", b"plan v1\n")
    world.write(laptop, "photos/beach.jpg", b"\xff\xd8 beach" * 100)
    world.write(desk, "notes/bob.md", b"# bob\n")
    await step(3)

    world.write(desk, "docs/plan.txt", b"plan v1\nbob was here\n")
    world.rename(laptop, "photos", "pictures")
    world.mkdir(phone, "archive")
    await step(3)
    world.rename(phone, "notes/bob.md", "archive/bob.md")
    world.delete(laptop, "notes")
    await step(2)

    # The relay is unreachable: every device keeps working offline.
    world.sim.net.isolate(RELAY_HOST)
    stats.partitions += 1
    stats.partition_s += OUTAGE_S
    await asyncio.sleep(5)
    world.write(laptop, "docs/plan.txt", b"plan v2 by ada\n")
    world.write(desk, "docs/plan.txt", b"plan v2 by bob\n")
    world.delete(phone, "pictures/beach.jpg")
    world.rename(desk, "pictures/beach.jpg", "pictures/sunset.jpg")
    world.write(phone, "archive/todo.txt", b"- buy milk\n")
    stats.operations += 5
    stats.edit_delete_races += 1
    await asyncio.sleep(OUTAGE_S)
    await world.checkpoint()
    world.sim.net.heal()


def run_scripted(seed: int = 0) -> Outcome:
    return run_world(seed, three_devices)
