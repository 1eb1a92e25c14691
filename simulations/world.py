"""A World: the real relay and N real devices of several users on one seed and one virtual loop.

    world = World(sim, scratch)
    await world.start_relay()
    laptop = world.add_device("laptop", user="ada", lan="home")
    phone = world.add_device("phone", user="ada")           # a second device of ada
    desk = world.add_device("desk", user="bob", lan="office")
    share = await world.create_share(laptop, [phone, desk])  # invites bob, joins every device
    world.start_all()
    world.write(laptop, "notes.txt", b"hello")                # a user's edit, then the watcher
    await world.quiesce()

Users edit through the device's ``MemFileSystem`` the way a careful editor does (write a temp file,
fsync, rename), and the device's folder watcher is the ``poke`` after each edit.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from peer.device.home import Home
from peer.device.identity import init_identity, install_certificate, load_user, new_device_key
from peer.engine.shares import InviteCode, create_share, invite_member, join_share, remove_member
from peer.engine.state import ShareState
from peer.fs import FileKind, FsError, MemFileSystem
from peer.fs.errors import SimulatedCrash
from protocol.chain import Role
from seams import SeededRandom
from simulations.device import SimDevice
from simulations.invariants import disk_not_tree, user_tree
from simulations.relayhost import RELAY_HOST, SimRelay
from simulations.runtime.simulation import Simulation


class Checkpoint(Protocol):
    async def check(self) -> None: ...


@dataclass
class Removal:
    user: str
    chain_height: int  # the removal's height in the membership chain
    at_s: float
    rotated_to: int | None = None  # the key epoch started after it (None: not rotated)


class World:
    def __init__(self, sim: Simulation, scratch: Path) -> None:
        self.sim = sim
        self.scratch = scratch
        self.trace = sim.trace
        self.clock = sim.clock()
        self.relay: SimRelay | None = None
        self.devices: dict[str, SimDevice] = {}
        self.users: dict[str, str] = {}  # user → the device holding the user key
        self.share: str | None = None
        self.removals: list[Removal] = []
        # Every content a user ever wrote: a file at a real path must hold one of these.
        self.written: set[bytes] = set()
        # How a device's folder is made (a test swaps in a faulty file system).
        self.fs_factory: Callable[..., MemFileSystem] = MemFileSystem
        self.checker: Checkpoint | None = None
        self.accepted_deletes = 0
        self._unchanged_at = -1

    async def checkpoint(self) -> None:
        """Run the continuous invariants now (after a crash, during a partition)."""
        if self.checker is not None:
            await self.checker.check()

    # -- assembly --------------------------------------------------------------------------------

    async def start_relay(self) -> SimRelay:
        host = self.sim.net.add_host(RELAY_HOST)
        self.relay = SimRelay(host, self.scratch / "relay", self.clock, self.sim.random("relay"))
        await self.relay.start()
        self.trace.record(RELAY_HOST, "relay.start")
        return self.relay

    def add_device(self, name: str, *, user: str, lan: str | None = None) -> SimDevice:
        """A device of ``user`` (the first one of a user makes the user key)."""
        self.sim.net.add_host(name, lan=lan)
        rng = self.sim.random(f"device/{name}")
        home = Home(self.scratch / "homes" / name)
        holder = self.users.get(user)
        if holder is None:
            init_identity(home, name, self.clock, rng.fork("identity"))
            self.users[user] = name
        else:
            user_identity = load_user(self.devices[holder].home)
            assert user_identity is not None
            device_key = new_device_key(home, rng.fork("identity"))
            certificate = user_identity.certify(device_key.public_key, name, self.clock.now_ms())
            install_certificate(home, certificate)
        SimDevice.write_config(home, name, lan=lan is not None)
        fs = self.fs_factory(seed=_fs_seed(rng), clock=self.clock)
        device = SimDevice(
            name,
            user,
            home,
            self.scratch / "folders" / name,
            fs,
            self.sim.net,
            self.clock,
            rng,
            self.trace,
        )
        self.devices[name] = device
        self.trace.record(name, "device.add", user=user, lan=lan or "-")
        if lan is not None:
            self._wire_lan(lan)
        return device

    def _wire_lan(self, lan: str) -> None:
        """Each device on segment ``lan`` dials those named after it: one link per pair (the
        accepting side serves it as fully as the dialling one)."""
        neighbours = [n for n in sorted(self.devices) if self.sim.net.lan_of(n) == lan]
        for index, name in enumerate(neighbours):
            self.devices[name].set_lan_peers(neighbours[index + 1 :])

    async def create_share(self, owner: SimDevice, members: list[SimDevice]) -> str:
        """``owner`` creates the share; other users are invited as editors; every device joins."""
        node = owner.new_node()
        rng = owner.rng.fork("share")
        share = await create_share(
            owner.home,
            node.config,
            node.device,
            node.link,
            owner.folder,
            name="shared",
            clock=self.clock,
            rng=rng,
            databases=owner.databases,
        )
        invited: dict[str, str] = {}
        for member in members:
            if member.user == owner.user or member.user in invited:
                continue
            user_key = _user_key(self.devices[self.users[member.user]])
            invited[member.user] = await invite_member(
                owner.home,
                node.config,
                node.device,
                node.link,
                share,
                user_key,
                Role.EDITOR,
                clock=self.clock,
                rng=rng,
                databases=owner.databases,
            )
        await node.close()
        for member in members:
            code = invited.get(member.user)
            if code is None:  # the owner's own user: the owner invites its user again
                code = await self._own_invite(owner, share, rng)
            joiner = member.new_node()
            await join_share(
                member.home,
                joiner.config,
                joiner.device,
                joiner.link,
                InviteCode.from_text(code),
                member.folder,
                databases=member.databases,
            )
            await joiner.close()
        self.share = share
        self.trace.record(owner.name, "share.create", members=len(members) + 1)
        return share

    async def _own_invite(self, owner: SimDevice, share: str, rng: SeededRandom) -> str:
        node = owner.new_node()
        try:
            return await invite_member(
                owner.home,
                node.config,
                node.device,
                node.link,
                share,
                _user_key(owner),
                Role.OWNER,
                clock=self.clock,
                rng=rng,
                databases=owner.databases,
            )
        finally:
            await node.close()

    def start_all(self) -> None:
        for name in sorted(self.devices):
            self.devices[name].start()

    async def remove_user(self, owner: SimDevice, user: str) -> Removal:
        """The owner removes ``user`` (each of its devices cut off at what the relay holds).

        The owner's daemon is stopped meanwhile: ``remove_member`` opens the share's state
        database itself, and a second writer would wait on SQLite's lock in real time."""
        assert self.share is not None
        assert self.relay is not None
        was_up = owner.up
        await owner.stop()
        node = owner.new_node()
        try:
            done = await remove_member(
                owner.home,
                node.device,
                node.link,
                self.share,
                _user_key(self.devices[self.users[user]]),
                clock=self.clock,
                rng=owner.rng.fork(f"remove/{user}"),
                databases=owner.databases,
            )
        finally:
            await node.close()
        if was_up:
            owner.start()
        height = await self.relay.chain_height(self.share)
        rotated_to = done.rotation.epoch if done.rotation is not None else None
        removal = Removal(user, height, self.clock.monotonic(), rotated_to)
        self.removals.append(removal)
        for device in self.devices.values():
            if device.user == user:
                device.removed = True
        self.trace.record(
            owner.name, "share.remove", user=user, height=height, rotated_to=rotated_to
        )
        return removal

    # -- convergence -----------------------------------------------------------------------------

    def members(self) -> list[SimDevice]:
        return [self.devices[n] for n in sorted(self.devices) if not self.devices[n].removed]

    async def converged(self) -> bool:
        """Every member is up, has sent everything, read the whole log, and shows one tree on a
        disk that matches it."""
        assert self.share is not None
        assert self.relay is not None
        if self.trace.count == self._unchanged_at:
            return False  # nothing happened since the last look said no
        head = await self.relay.last_seq(self.share)
        syncs = []
        for device in self.members():
            node = device.node
            if not device.up or node is None or self.share not in node.syncs:
                return False
            sync = node.syncs[self.share]
            if sync.store.outbox() or sync.replica.cursor != head:
                return False
            syncs.append((device, sync))
        pictures = []
        for device, sync in syncs:
            listing = sync.tree.listing()
            base = sync.store.files()
            for path, (_, manifest) in listing.items():
                synced = base.get(path)
                if synced is None or (manifest is not None and synced.content != manifest):
                    self._unchanged_at = self.trace.count
                    return False
            disk = user_tree(device.fs)
            if disk_not_tree(sync, disk):
                # All alike is not enough: every device may hold the same stale folder while
                # each one's retry (after a failed move) is still to come.
                self._unchanged_at = self.trace.count
                return False
            pictures.append((listing, disk))
        if all(p == pictures[0] for p in pictures):
            return True
        self._unchanged_at = self.trace.count
        return False

    def attend(self) -> None:
        """The users look at their devices: a share paused by the mass-deletion guard is told to
        go on (``drift resume --accept-deletes``), since every deletion here was meant."""
        for device in self.members():
            node = device.node
            if not device.up or node is None or self.share not in node.syncs:
                continue
            sync = node.syncs[self.share]
            if sync.state is ShareState.PAUSED and "--accept-deletes" in sync.reason:
                sync.store.set("accept_deletes", True)
                self.accepted_deletes += 1
                device.poke()
                self.trace.record(device.name, "user.accept_deletes")

    async def quiesce(self, limit_s: float, step_s: float = 0.5) -> float | None:
        """Wait until :meth:`converged`; the virtual seconds it took, or None past ``limit_s``."""
        start = self.clock.monotonic()
        while self.clock.monotonic() - start <= limit_s:
            if await self.converged():
                took = self.clock.monotonic() - start
                self.trace.record("-", "world.converged", after_s=round(took, 3))
                return took
            self.attend()
            await asyncio.sleep(step_s)
        self.trace.record("-", "world.not_converged", limit_s=limit_s)
        return None

    # -- a user at a device ----------------------------------------------------------------------

    def write(self, device: SimDevice, path: str, data: bytes) -> bool:
        """Write a file as an editor does (temp, fsync, rename); False if the path is unusable."""
        self.written.add(hashlib.sha256(data).digest())
        parent = path.rpartition("/")[0]
        try:
            if parent:
                device.fs.mkdir(parent, parents=True)
        except (FsError, SimulatedCrash):
            pass
        try:
            device.fs.write_atomic(path, data)
        except (FsError, SimulatedCrash):
            return False
        device.poke()
        self.trace.record(device.name, "user.write", path=path, size=len(data))
        return True

    def read(self, device: SimDevice, path: str) -> bytes | None:
        try:
            return device.fs.read_range(path, 0, 1 << 30)
        except (FsError, SimulatedCrash):
            return None

    def mkdir(self, device: SimDevice, path: str) -> bool:
        try:
            device.fs.mkdir(path, parents=True)
        except (FsError, SimulatedCrash):
            return False
        device.poke()
        self.trace.record(device.name, "user.mkdir", path=path)
        return True

    def rename(self, device: SimDevice, src: str, dst: str) -> bool:
        try:
            parent = dst.rpartition("/")[0]
            if parent:
                device.fs.mkdir(parent, parents=True)
        except (FsError, SimulatedCrash):
            pass
        try:
            device.fs.rename(src, dst)
        except (FsError, SimulatedCrash):
            return False
        device.poke()
        self.trace.record(device.name, "user.rename", src=src, dst=dst)
        return True

    def delete(self, device: SimDevice, path: str) -> bool:
        """Delete a file, or a folder with everything in it."""
        try:
            info = device.fs.lstat(path)
            if info.kind is FileKind.DIR:
                for child in device.fs.list_dir(path):
                    self.delete(device, f"{path}/{child.name}")
                device.fs.rmdir(path)
            else:
                device.fs.remove_file(path)
        except (FsError, SimulatedCrash):
            return False
        device.poke()
        self.trace.record(device.name, "user.delete", path=path)
        return True


def _user_key(device: SimDevice) -> bytes:
    user = load_user(device.home)
    assert user is not None, f"{device.name} holds no user key"
    return user.public_key


def _fs_seed(rng: SeededRandom) -> int:
    return int.from_bytes(rng.fork("fs").bytes(4), "big")
