"""One simulated device: the real ``DeviceNode`` daemon on a ``MemFileSystem``, crashable.

The device's small files (identity, config, the saved tree) live in a scratch directory; each
share's state database lives in memory (``seams.memorydb``), handed to the daemon through its
``Seams``. Every statement runs inline on the loop's thread, so a seed replays exactly.

A crash keeps exactly what was durable: the folder from ``MemFileSystem.crash()`` and, for each
state database, its committed transactions (the crash closes the daemon's connections first, so
an open transaction is rolled back, and the ``finally`` blocks that run as the daemon is stopped
can commit nothing more).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from peer.device.config import DeviceConfig
from peer.device.home import Home
from peer.device.identity import load_device
from peer.engine.lannode import LanSeams
from peer.engine.node import DeviceNode
from peer.engine.node import Seams as PeerSeams
from peer.engine.sync import ShareSync
from peer.fs import FileSystem, MemFileSystem
from peer.fs.errors import SimulatedCrash
from peer.remote.http import HttpRelayLink
from seams import InlineExecutor, SeededRandom
from seams.memorydb import MemoryStateDatabases
from simulations.lanstreams import SimLanStreams
from simulations.relayhost import RELAY_URL
from simulations.relaylink import sim_relay_link
from simulations.runtime.clock import SimClock
from simulations.runtime.network import SimNetwork
from simulations.runtime.trace import Trace

RESCAN_INTERVAL_S = 120
LAN_PORT = 22070


@dataclass
class SimDevice:
    name: str
    user: str
    home: Home
    folder: Path  # a placeholder path the share config names; the bytes live in ``fs``
    fs: MemFileSystem
    net: SimNetwork
    clock: SimClock
    rng: SeededRandom
    trace: Trace
    node: DeviceNode | None = None
    up: bool = False
    removed: bool = False
    crashes: int = 0
    _stop: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None
    starts: int = field(default=0)
    links: list[HttpRelayLink] = field(default_factory=list)
    databases: MemoryStateDatabases = field(default_factory=MemoryStateDatabases)

    @staticmethod
    def write_config(home: Home, name: str, *, lan: bool = False) -> None:
        """The device's config; with ``lan`` it syncs with LAN peers too (its host name is its
        LAN address, and ``set_lan_peers`` says whom it dials: mDNS has no simulated twin)."""
        DeviceConfig(
            device_name=name,
            relay_url=RELAY_URL,
            rescan_interval_s=RESCAN_INTERVAL_S,
            watch_delay_ms=50,
            lan_enabled=lan,
            lan_port=LAN_PORT,
            lan_addresses=[name],
        ).save(home.config)

    def set_lan_peers(self, peers: list[str]) -> None:
        """The simulated hosts this device dials on its LAN (as the ``lan_peers`` setting)."""
        config = DeviceConfig.load(self.home.config)
        config.lan_peers = [f"{peer}:{LAN_PORT}" for peer in peers]
        config.save(self.home.config)

    def new_node(self) -> DeviceNode:
        """A node over this device's home, folder and simulated host (not yet running)."""
        rng = self.rng.fork(f"boot/{self.starts}")
        self.starts += 1
        device = load_device(self.home, rng)
        link = sim_relay_link(
            self.net.host(self.name), RELAY_URL, device, clock=self.clock, rng=rng.fork("link")
        )
        link.register = True
        self.links.append(link)
        fs = self.fs

        def folder(_path: str) -> FileSystem:
            return fs

        lan = LanSeams(
            streams=SimLanStreams(self.net.host(self.name), device.certificate.device_key),
            discovery=False,
            status_file=False,
        )
        seams = PeerSeams(
            clock=self.clock,
            rng=rng,
            executor=InlineExecutor(),
            folder=folder,
            databases=self.databases,
            lan=lan,
        )
        return DeviceNode(self.home, seams=seams, link=link, watch=False)

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Boot the daemon (``DeviceNode.run``), as ``drift start`` would."""
        assert not self.up
        self.node = self.new_node()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(self.node, self._stop), name=f"dev-{self.name}")
        self.up = True
        self.trace.record(self.name, "device.start")

    async def _run(self, node: DeviceNode, stop: asyncio.Event) -> None:
        try:
            await node.run(stop)
        finally:
            with contextlib.suppress(Exception):
                await node.close()

    def poke(self) -> None:
        """What the folder watcher does after a local change: wake every share's loop."""
        if self.node is not None and self.up:
            for trigger in self.node.triggers.values():
                trigger.set()

    async def stop(self) -> None:
        """A clean shutdown (a device whose folder died at a crash point crashes instead)."""
        if not self.up:
            return
        if self.fs.crashed:
            await self.crash()
            return
        assert self._stop is not None
        assert self._task is not None
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.close_links()
        self.up = False
        self.trace.record(self.name, "device.stop")

    async def crash(self) -> None:
        """Power loss: only what was durable survives, in the folder and in the state databases.
        A device that is already down (stopped cleanly) loses what its folder had not fsynced."""
        if not self.up:
            self.fs = self.fs.crash()
            self.crashes += 1
            self.trace.record(self.name, "device.crash", was="down")
            return
        assert self._task is not None
        assert self.node is not None
        self.databases.power_cut()
        self.fs = self.fs.crash()
        self.net.crash(self.name)
        self._task.cancel()
        # A crash point that fired kills the daemon with SimulatedCrash (a BaseException).
        with contextlib.suppress(asyncio.CancelledError, Exception, SimulatedCrash):
            await self._task
        await self.close_links()
        self.up = False
        self.crashes += 1
        self.trace.record(self.name, "device.crash")

    async def close_links(self) -> None:
        """Close every relay session this device opened (all its links are kept until the run
        ends). A daemon task that dies of a crash point leaves its siblings to finish cancelling
        after ``DeviceNode.close``; one may open a fresh session on its way out."""
        for _ in range(2):
            await asyncio.sleep(0.01)
            for link in self.links:
                with contextlib.suppress(Exception):
                    await link.close()

    def restart(self) -> None:
        """Power back on (a no-op for a device that is running)."""
        if self.up:
            return
        self.net.restart(self.name)
        self.start()

    # -- what the scenario and the checker look at -----------------------------------------------

    def share_sync(self, share: str) -> ShareSync:
        assert self.node is not None
        return self.node.share(share)

    def take_backup(self, dest: Path) -> Backup:
        """What a backup tool copies now: the home directory (its databases as committed) and
        the folder as it is on disk (durable or not: a backup reads files, not the platter)."""
        shutil.copytree(self.home.root, dest)
        self.trace.record(self.name, "device.backup")
        return Backup(dest, self.databases.committed(), copy.deepcopy(self.fs))

    async def restore_backup(self, backup: Backup) -> None:
        """The device is wiped and restored from ``backup``: its key file comes back as a new
        file, so the device takes a new install id (as after any real restore)."""
        await self.stop()
        shutil.rmtree(self.home.root)
        shutil.copytree(backup.home, self.home.root)
        self.databases.replace(backup.databases)
        self.fs = copy.deepcopy(backup.folder)
        self.trace.record(self.name, "device.restore")
        self.start()


@dataclass(frozen=True)
class Backup:
    home: Path  # the small files
    databases: dict[Path, bytes]  # each state database as committed, by its path in the home
    folder: MemFileSystem
