"""Restoring "as of" a time follows the relay's append times, not the devices' clocks."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from peer.device.store import ShareStore, StoredUpdate
from peer.engine.node import DeviceNode, Seams
from peer.engine.restore import restore, select
from seams import SystemClock
from tests.peer_sync.harness import Dev, make_device, running_relay, settle, share_between

SKEW_MS = 40_000  # inside the relay's login window, far beyond the test's own timing


@dataclass
class SkewedClock(SystemClock):
    offset_ms: int = 0

    def now_ms(self) -> int:
        return super().now_ms() + self.offset_ms


def skewed(dev: Dev, offset_ms: int) -> Dev:
    dev.node = DeviceNode(dev.home, seams=Seams(clock=SkewedClock(offset_ms)), watch=False)
    return dev


async def test_devices_with_skewed_clocks_restore_what_the_relay_ordered(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        ahead = skewed(make_device(tmp_path, "ahead", url), +SKEW_MS)
        behind = skewed(make_device(tmp_path, "behind", url), -SKEW_MS)
        try:
            share = await share_between(ahead, behind)
            ahead.folder.mkdir(exist_ok=True)
            (ahead.folder / "notes.txt").write_bytes(b"first")
            await settle([ahead, behind])
            await asyncio.sleep(0.02)
            moment = SystemClock().now_ms()  # the relay's clock: it runs in this process
            await asyncio.sleep(0.02)
            (behind.folder / "notes.txt").write_bytes(b"second")
            await settle([behind, ahead])
            assert ahead.files() == behind.files() == {"notes.txt": b"second"}

            # By their own clocks the ahead device wrote "first" after the moment and the
            # behind device wrote "second" before it; the relay appended them the other way.
            for dev in (ahead, behind):
                sync = dev.node.share(share)
                items = select(sync, "notes.txt", at_ms=moment)
                target = tmp_path / f"restored-{dev.name}"
                assert await restore(sync, "notes.txt", items, target) == 1
                assert target.read_bytes() == b"first", dev.name
        finally:
            for dev in (ahead, behind):
                await dev.node.close()


def test_updates_no_relay_ordered_count_from_their_receipt(tmp_path: Path) -> None:
    store = ShareStore(tmp_path / "share.db")
    try:
        store.record_update(StoredUpdate(b"d" * 32, b"i" * 16, 1, {}, b"u1", None, 5_000))
        store.record_update(StoredUpdate(b"d" * 32, b"i" * 16, 2, {}, b"u2", None, 6_000))
        store.set_relay_seq(b"d" * 32, b"i" * 16, 1, relay_seq=7, relay_ms=9_000)
        # A later page naming the same update again does not move it.
        store.set_relay_seq(b"d" * 32, b"i" * 16, 1, relay_seq=7, relay_ms=9_500)
        first, second = store.updates()
        assert (first.relay_seq, first.ordered_ms) == (7, 9_000)
        assert (second.relay_seq, second.ordered_ms) == (None, 6_000)
    finally:
        store.close()


def test_a_store_from_before_append_times_opens_and_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE updates (ord INTEGER PRIMARY KEY AUTOINCREMENT, device BLOB NOT NULL, "
        "install BLOB NOT NULL, seq INTEGER NOT NULL, seen BLOB NOT NULL, body BLOB NOT NULL, "
        "relay_seq INTEGER, time_ms INTEGER NOT NULL, UNIQUE (device, install, seq));"
        "INSERT INTO updates (device, install, seq, seen, body, relay_seq, time_ms) "
        "VALUES (x'01', x'02', 1, x'80', x'00', 3, 4000);"
    )
    old.commit()
    old.close()
    store = ShareStore(path)
    try:
        (update,) = store.updates()
        assert (update.relay_seq, update.relay_ms, update.ordered_ms) == (3, None, 4_000)
    finally:
        store.close()
