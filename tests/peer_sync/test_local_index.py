"""The engine on the local index: what a pass reads, what survives a restart, and why a file is
not synced, through a real relay on loopback."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from peer.device.store import ShareStore
from peer.engine.node import DeviceNode, Seams
from peer.engine.shares import state_path
from peer.errors import RelayUnreachable
from peer.fs import FileInfo, OsFileSystem
from peer.local.index import SyncState
from peer.local.watch import Watcher
from tests.peer_sync.harness import Dev, make_device, running_relay, settle, share_between


class CountingFs(OsFileSystem):
    """The real folder, counting every read of a file's bytes."""

    reads: int = 0

    def open_read(self, path: str) -> BinaryIO:
        CountingFs.reads += 1
        return super().open_read(path)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        CountingFs.reads += 1
        return super().read_range(path, offset, length)


def counting_device(dev: Dev) -> DeviceNode:
    return DeviceNode(dev.home, seams=Seams(folder=CountingFs), watch=False)


async def test_a_pass_over_an_unchanged_folder_reads_no_file(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        await a.node.close()
        a.node = counting_device(a)
        try:
            share = await share_between(a, b)
            for i in range(40):
                folder = a.folder / f"d{i % 4}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"f{i}.txt").write_bytes(b"x" * i)
            await settle([a, b])
            await asyncio.sleep(0.05)  # past the folder's mtime resolution: nothing is racy
            await a.sync()  # files recorded in their own mtime tick are hashed once more
            CountingFs.reads = 0
            report = (await a.node.sync_once(share))[share]
            assert CountingFs.reads == 0
            assert report.published == 0

            (a.folder / "d1" / "f1.txt").write_bytes(b"changed")
            report = (await a.node.sync_once(share))[share]
            assert report.published == 1
            assert 1 <= CountingFs.reads <= 3  # the changed file only: hashed, then uploaded
            await settle([a, b])
            assert b.files()["d1/f1.txt"] == b"changed"
        finally:
            await a.node.close()
            await b.node.close()


async def test_status_says_why_each_file_is_not_synced_and_keeps_it_across_a_restart(
    tmp_path: Path,
) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            (a.folder / "link").symlink_to(tmp_path / "elsewhere")
            (a.folder / "synced.txt").write_bytes(b"ok")
            await settle([a, b])
        finally:
            await a.node.close()
            await b.node.close()
    # The relay is gone: a new file waits, and says so; so does the symlink, after a restart.
    (a.folder / "later.txt").write_bytes(b"made offline")
    a.node = DeviceNode(a.home, watch=False)
    try:
        with pytest.raises(RelayUnreachable):
            await a.sync()
        why = a.node.status(share).not_synced
        assert "symbolic links are not synced" in why["link"]
        assert why["later.txt"] == "new here: not yet published"
        assert "synced.txt" not in why
        index = ShareStore(state_path(a.home, share))
        try:
            assert index.unsynced()["later.txt"] is SyncState.NEW
        finally:
            index.close()
    finally:
        await a.node.close()


def test_a_state_database_from_before_the_index_is_adopted(tmp_path: Path) -> None:
    """The engine's old ``files`` table (what was synced at each tree path) becomes synced
    index entries, its errors stay, and nothing else in the state database is touched."""
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB);
        CREATE TABLE files (
            path TEXT PRIMARY KEY, disk_path TEXT NOT NULL, entry TEXT NOT NULL,
            kind TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
            inode INTEGER NOT NULL, executable INTEGER NOT NULL, content BLOB, version TEXT,
            synced_ns INTEGER NOT NULL
        );
        CREATE TABLE file_errors (
            path TEXT PRIMARY KEY, op TEXT NOT NULL, reason TEXT NOT NULL,
            since_ms INTEGER NOT NULL, retry_at_ms INTEGER NOT NULL
        );
        INSERT INTO meta VALUES ('cursor', x'07');
        INSERT INTO files VALUES ('docs', 'docs', 'aaaaaaaaaa.1', 'dir', 0, 5, 11, 0, NULL,
                                  NULL, 9);
        INSERT INTO files VALUES ('docs/CON', 'docs/CON_x', 'aaaaaaaaaa.2', 'file', 3, 6, 12, 1,
                                  x'0102', 'aaaaaaaaaa.3', 9);
        INSERT INTO file_errors VALUES ('docs/big', 'upload', 'disk full', 100, 200);
        """
    )
    db.commit()
    db.close()
    store = ShareStore(path)
    try:
        base = store.files()
        assert set(base) == {"docs", "docs/CON"}
        synced = base["docs/CON"]
        assert (synced.disk_path, synced.entry, synced.version, synced.content) == (
            "docs/CON_x",
            "aaaaaaaaaa.2",
            "aaaaaaaaaa.3",
            b"\x01\x02",
        )
        assert synced.executable is True
        assert synced.state is SyncState.SYNCED
        assert [(e.path, e.reason) for e in store.file_errors()] == [("docs/big", "disk full")]
        assert store.get("cursor") is not None
        tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
        assert not {"legacy_files", "legacy_file_errors"} & tables
    finally:
        store.close()
    again = ShareStore(path)  # opening again migrates nothing twice
    try:
        assert set(again.files()) == {"docs", "docs/CON"}
    finally:
        again.close()


async def test_executable_bit_is_seen_without_reading_unchanged_files(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            await share_between(a, b)
            tool = a.folder / "tool"
            tool.write_bytes(b"#!/bin/sh\n")
            await settle([a, b])
            os.chmod(tool, 0o755)
            await settle([a, b])
            assert os.access(b.folder / "tool", os.X_OK)
        finally:
            await a.node.close()
            await b.node.close()


class ListingFs(OsFileSystem):
    """The real folder, counting directory listings."""

    listed: int = 0

    def list_dir(self, path: str) -> list[FileInfo]:
        ListingFs.listed += 1
        return super().list_dir(path)


async def test_watch_events_narrow_a_pass_and_the_full_rescan_catches_the_rest(
    tmp_path: Path,
) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        await a.node.close()
        a.node = DeviceNode(a.home, seams=Seams(folder=ListingFs), watch=False)
        try:
            share = await share_between(a, b)
            for d in range(10):
                (a.folder / f"d{d}").mkdir(parents=True)
                (a.folder / f"d{d}" / "f.txt").write_bytes(b"%d" % d)
            await settle([a, b])
            sync = a.node.share(share)
            sync.watching = True  # as the daemon's healthy watcher sets it
            await a.sync()  # the last whole-folder pass; from now on only what events name
            (a.folder / "d3" / "new.txt").write_bytes(b"seen by the watcher")
            (a.folder / "d7" / "f.txt").unlink()
            (a.folder / "d5" / "unseen.txt").write_bytes(b"no event came for this")
            sync.note_changed(frozenset({"d3/new.txt", "d7/f.txt"}))
            ListingFs.listed = 0
            await a.sync()
            assert ListingFs.listed == 0  # two paths looked at, no folder listed
            await b.sync()
            assert b.files().get("d3/new.txt") == b"seen by the watcher"
            assert "d7/f.txt" not in b.files()
            assert "d5/unseen.txt" not in b.files()

            sync.note_changed(frozenset(), full=True)  # the periodic rescan
            await a.sync()
            assert ListingFs.listed >= 10
            await b.sync()
            assert b.files().get("d5/unseen.txt") == b"no event came for this"
        finally:
            await a.node.close()
            await b.node.close()


class OutOfWatches(Watcher):
    """The real watcher on a machine whose inotify watches ran out (the OS probe says so)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, watches_left=lambda: False, **kwargs)


async def test_running_out_of_watches_shows_in_drift_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("peer.engine.node.Watcher", OutOfWatches)
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        await b.node.close()
        await a.node.close()
        a.node = DeviceNode(a.home, watch=True)
        stop = asyncio.Event()
        daemon = asyncio.create_task(a.node.run(stop))
        try:
            other = DeviceNode(a.home, watch=False)  # `drift status` in another process
            try:
                deadline = asyncio.get_running_loop().time() + 10
                while "ran out of file watches" not in other.status(share).reason:
                    assert asyncio.get_running_loop().time() < deadline, other.status(share)
                    await asyncio.sleep(0.05)
                assert "ran out of file watches" in a.node.status(share).reason
            finally:
                await other.close()
        finally:
            stop.set()
            await daemon
            await a.node.close()
        after = DeviceNode(a.home, watch=False)
        try:
            assert "watches" not in after.status(share).reason  # it ended with the daemon
        finally:
            await after.close()
