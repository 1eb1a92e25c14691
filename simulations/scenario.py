"""Randomized scenarios: a seed's schedule played against the real relay and five real devices.

Users create, edit, append to, truncate, rename, move and delete files and folders in bursts;
races are played on two devices at the same instant (concurrent edits of one file, an edit
against a delete, two folders moved into each other); the network partitions and heals; devices
lose power, some in the middle of writing a file (a MemFileSystem crash point), and reboot from
what was durable; the owner may remove a user. Afterwards the harness heals everything, waits
for quiescence and checks every invariant.
"""

from __future__ import annotations

import asyncio
from typing import TextIO

from peer.fs import FileKind, FsError
from peer.fs.errors import SimulatedCrash
from seams import SeededRandom
from simulations.device import Backup, SimDevice
from simulations.harness import Outcome, Stats, run_world
from simulations.relayhost import RELAY_HOST
from simulations.runtime.simulation import Simulation
from simulations.schedule import DEVICES, OWNER, REMOVABLE_USER, Schedule, Step, generate
from simulations.world import World

FOLDERS = ("docs", "photos", "docs/old", "music", "work/q1")
NAMES = ("a.txt", "b.txt", "Notes.md", "report.doc", "c.bin")
CRASH_POINTS = ("write.before_rename", "write.before_dir_fsync", "rename.before_dir_fsync")


def run_seed(
    seed: int, *, schedule: Schedule | None = None, sink: TextIO | None = None, **kwargs: object
) -> Outcome:
    """One randomized seed: its schedule from :func:`generate` unless given, its network's
    fault mix (latency, jitter, bandwidth, stream loss, resets) and timer ties from ``swarm``."""
    schedule = schedule or generate(seed)
    sim = Simulation.from_swarm(seed, trace_sink=sink)
    return run_world(seed, ScheduleRunner(schedule).run, sim=sim, **kwargs)  # type: ignore[arg-type]


class ScheduleRunner:
    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.background: list[asyncio.Task[None]] = []
        self.crashing: set[str] = set()
        self.partition_started: float | None = None
        self.backups: dict[str, Backup] = {}
        self.removal_pending = False

    async def run(self, world: World, stats: Stats) -> None:
        devices = [
            world.add_device(name, user=user, lan=self.schedule.lan_of(name))
            for name, user in DEVICES
            if any(name in s.devices for s in self.schedule.steps) or name == OWNER
        ]
        world.trace.record("-", "lan.layout", name=self.schedule.lan_layout)
        owner = world.devices[OWNER]
        await world.create_share(owner, [d for d in devices if d is not owner])
        world.start_all()
        for step in self.schedule.steps:
            world.trace.record("-", "step", what=step.describe())
            await self.play(world, stats, step)
            world.attend()
            if self.removal_pending:
                await self.try_removal(world, stats)
        await self.top_up(world, stats)
        for task in self.background:
            await task
        if self.partition_started is not None:
            stats.partition_s = world.clock.monotonic() - self.partition_started
        await world.checkpoint()

    async def play(self, world: World, stats: Stats, step: Step) -> None:
        rng = SeededRandom(step.seed).fork(step.kind)
        kind = step.kind
        if kind == "wait":
            await asyncio.sleep(step.seconds)
        elif kind == "burst":
            device = world.devices[step.devices[0]]
            for _ in range(step.count):
                if _usable(device):
                    op = _pick(rng, _OPS)
                    stats.operations += file_op(
                        world, device, rng, op, move_folders=self.schedule.move_folders
                    )
        elif kind in ("concurrent_edit", "edit_vs_delete", "cross_move"):
            await self.race(world, stats, step, rng)
        elif kind in ("partition", "lan_only"):
            if kind == "lan_only":
                world.sim.net.lan_only()
            else:
                world.sim.net.partition(step.groups)
            # Held until the schedule ends: the harness heals it and measures convergence from
            # there, so convergence time can be plotted against the partition's length.
            stats.partitions += 1
            self.partition_started = world.clock.monotonic()
        elif kind in ("crash", "crash_mid_write"):
            await self.crash(world, stats, step, rng)
        elif kind == "backup":
            device = world.devices[step.devices[0]]
            if _usable(device):
                self.backups[device.name] = device.take_backup(
                    world.scratch / "backups" / f"{device.name}-{len(self.backups)}"
                )
        elif kind == "restore_backup":
            device = world.devices[step.devices[0]]
            backup = self.backups.pop(device.name, None)
            if backup is not None and _usable(device) and device.name not in self.crashing:
                await device.restore_backup(backup)
                stats.restores += 1
        elif kind == "remove_user":
            self.removal_pending = True
        else:
            raise ValueError(f"unknown step kind {kind!r}")

    async def top_up(self, world: World, stats: Stats) -> None:
        """Bursts that came while their device was down (crashed, removed) did nothing, so a
        full schedule may play fewer operations than the floor: users go on working on the
        devices that are up until it is met. A shorter schedule (shrinking, small tests) plans
        fewer than the floor and gets nothing more."""
        if self.schedule.operations < MIN_OPERATIONS:
            return
        rng = SeededRandom(self.schedule.seed).fork("top-up")
        for _ in range(4 * MIN_OPERATIONS):  # bounded: devices may all be down for a while
            if stats.operations >= MIN_OPERATIONS:
                return
            usable = [world.devices[n] for n in sorted(world.devices) if _usable(world.devices[n])]
            if usable:
                device = usable[min(len(usable) - 1, int(rng.uniform(0, len(usable))))]
                world.trace.record(device.name, "top_up", operations=stats.operations)
                stats.operations += file_op(
                    world, device, rng, _pick(rng, _OPS), move_folders=self.schedule.move_folders
                )
            await asyncio.sleep(round(rng.uniform(0.05, 3.0), 3))

    async def try_removal(self, world: World, stats: Stats) -> None:
        """The owner removes cy as soon as it can (not while its laptop is down or cut off
        from the relay: then it tries again after the next step)."""
        if REMOVABLE_USER not in world.users or OWNER in self.crashing:
            return
        owner = world.devices[OWNER]
        if not _usable(owner) or not world.sim.net.reachable(OWNER, RELAY_HOST):
            return
        try:
            removal = await world.remove_user(owner, REMOVABLE_USER)
        except Exception as exc:  # the relay went away meanwhile: try again later
            world.trace.record(OWNER, "share.remove.failed", error=type(exc).__name__)
            return
        self.removal_pending = False
        stats.removals += 1
        stats.rotations += removal.rotated_to is not None

    async def race(self, world: World, stats: Stats, step: Step, rng: SeededRandom) -> None:
        first, second = (world.devices[n] for n in step.devices)
        if not (_usable(first) and _usable(second)):
            return
        if step.kind == "cross_move":
            # Two folders each moved into the other, on two devices at once: a cycle attempt.
            a, b = _pick(rng, FOLDERS[:2] + FOLDERS[3:4]), "photos"
            if a == b or not (_is_dir(first, a) and _is_dir(second, b)):
                for device, folder in ((first, a), (second, b)):
                    world.mkdir(device, folder)
                return
            world.rename(first, a, f"{b}/{a.rpartition('/')[2]}")
            world.rename(second, b, f"{a}/{b}")
            stats.cycles_attempted += 1
            stats.operations += 2
            return
        shared = sorted(set(_files(first)) & set(_files(second)))
        if not shared:
            stats.operations += file_op(world, first, rng, "create")
            return
        path = _pick(rng, shared)
        world.write(first, path, _content(rng, f"{first.name} races"))
        if step.kind == "concurrent_edit":
            world.write(second, path, _content(rng, f"{second.name} races"))
        else:
            world.delete(second, path)
            stats.edit_delete_races += 1
        stats.operations += 2

    async def crash(self, world: World, stats: Stats, step: Step, rng: SeededRandom) -> None:
        device = world.devices[step.devices[0]]
        if not device.up or device.name in self.crashing:
            return
        self.crashing.add(device.name)
        if step.kind == "crash_mid_write":
            # Armed: the device dies the next time it reaches this point while writing a file
            # (or when the window closes, if it writes nothing meanwhile).
            device.fs.arm_crash(_pick(rng, CRASH_POINTS))
        window_s = min(step.seconds, 20.0) if step.kind == "crash_mid_write" else 0.0
        self.background.append(
            asyncio.create_task(self._crash_later(world, stats, device, window_s, step.seconds))
        )

    async def _crash_later(
        self, world: World, stats: Stats, device: SimDevice, window_s: float, down_s: float
    ) -> None:
        waited = 0.0
        while waited < window_s and not device.fs.crashed:
            await asyncio.sleep(0.1)
            waited += 0.1
        await device.crash()
        stats.crashes += 1
        await world.checkpoint()
        await asyncio.sleep(down_s)
        device.restart()
        self.crashing.discard(device.name)


MIN_OPERATIONS = 200  # the floor per seed of a full schedule (the campaign's acceptance)

_OPS = (
    "create",
    "create",
    "edit",
    "edit",
    "append",
    "truncate",
    "rename",
    "move",
    "delete",
    "mkdir",
)


def file_op(
    world: World, device: SimDevice, rng: SeededRandom, op: str, *, move_folders: bool = True
) -> int:
    """One user operation at ``device``; 1 if it did something, else 0."""
    tree = _walk(device)
    files = sorted(p for p, k in tree.items() if k is FileKind.FILE)
    folders = sorted(p for p, k in tree.items() if k is FileKind.DIR)
    if op == "move" and not move_folders:
        op = "rename"
    if op in ("edit", "append", "truncate", "rename", "delete") and not files:
        op = "create"
    if op == "create":
        path = f"{_pick(rng, ('', *FOLDERS))}/{_pick(rng, NAMES)}".lstrip("/")
        return int(world.write(device, path, _content(rng, device.name)))
    if op == "mkdir":
        return int(world.mkdir(device, _pick(rng, FOLDERS)))
    if op == "move" and folders:
        src = _pick(rng, folders)
        dst_parent = _pick(rng, ("", *folders))
        dst = f"{dst_parent}/{src.rpartition('/')[2]}".lstrip("/")
        if dst == src or dst.startswith(src + "/"):
            return 0
        return int(world.rename(device, src, dst))
    if not files:
        return 0
    path = _pick(rng, files)
    if op == "edit":
        return int(world.write(device, path, _content(rng, device.name)))
    current = world.read(device, path) or b""
    if op == "append":
        return int(world.write(device, path, current + _content(rng, "+")))
    if op == "truncate":
        cut = int(rng.uniform(0, len(current) + 1))
        return int(world.write(device, path, current[:cut]))
    if op == "rename":
        parent = path.rpartition("/")[0]
        new = f"{parent}/{_pick(rng, NAMES)}".lstrip("/")
        return int(world.rename(device, path, new)) if new != path else 0
    if op == "move":
        dst = f"{_pick(rng, ('', *folders))}/{path.rpartition('/')[2]}".lstrip("/")
        return int(world.rename(device, path, dst)) if dst != path else 0
    target = path if rng.uniform(0, 1) < 0.8 or not folders else _pick(rng, folders)
    return int(world.delete(device, target))


def _content(rng: SeededRandom, tag: str) -> bytes:
    size = int(rng.uniform(0, 1) ** 3 * 6000)
    return f"{tag} {rng.bytes(4).hex()}\n".encode() + rng.bytes(size)


def _pick(rng: SeededRandom, items: tuple[str, ...] | list[str]) -> str:
    return items[min(len(items) - 1, int(rng.uniform(0, len(items))))]


def _usable(device: SimDevice) -> bool:
    return device.up and not device.removed and not device.fs.crashed


def _walk(device: SimDevice) -> dict[str, FileKind]:
    """What the user sees in the folder (callers sort what they pick from)."""
    try:
        return device.fs.kinds_below(_hidden)
    except (FsError, SimulatedCrash):
        return {}


def _hidden(path: str, name: str) -> bool:
    return path == ".drift" or name.startswith(".~drift-")


def _files(device: SimDevice) -> list[str]:
    return sorted(p for p, k in _walk(device).items() if k is FileKind.FILE)


def _is_dir(device: SimDevice, path: str) -> bool:
    try:
        return device.fs.lstat(path).kind is FileKind.DIR
    except FsError:
        return False
