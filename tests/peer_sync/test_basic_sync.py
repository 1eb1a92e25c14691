"""Two and three devices through a real relay on loopback: the everyday operations."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from peer.engine.restore import restore, select
from seams import SystemClock
from tests.peer_sync.harness import Dev, make_device, running_relay, settle, share_between


async def test_create_edit_rename_move_delete(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            await share_between(a, b)
            (a.folder / "docs").mkdir()
            (a.folder / "docs" / "note.txt").write_bytes(b"hello")
            (a.folder / "empty.txt").write_bytes(b"")
            (a.folder / "emptydir").mkdir()
            await settle([a, b])
            assert b.files() == {"docs/note.txt": b"hello", "empty.txt": b""}
            assert "emptydir" in b.dirs()

            (b.folder / "docs" / "note.txt").write_bytes(b"hello, edited")
            await settle([b, a])
            assert a.files()["docs/note.txt"] == b"hello, edited"

            os.rename(a.folder / "docs" / "note.txt", a.folder / "docs" / "renamed.txt")
            os.rename(a.folder / "docs", a.folder / "papers")
            await settle([a, b])
            assert b.files() == {"papers/renamed.txt": b"hello, edited", "empty.txt": b""}

            (b.folder / "empty.txt").unlink()
            await settle([b, a])
            assert a.files() == {"papers/renamed.txt": b"hello, edited"}
            assert any((a.folder / ".drift" / "trash").rglob("empty.txt"))
        finally:
            await close(a, b)


async def close(*devs: Dev) -> None:
    for dev in devs:
        await dev.node.close()


async def test_append_truncate_and_overwrite(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            await share_between(a, b)
            a.folder.mkdir(exist_ok=True)
            log = a.folder / "log.txt"
            log.write_bytes(b"line 1\n" * 50_000)  # several chunks
            await settle([a, b])
            with log.open("ab") as f:
                f.write(b"appended\n")
            await settle([a, b])
            assert b.files()["log.txt"] == log.read_bytes()
            with log.open("r+b") as f:
                f.truncate(10)
            await settle([a, b])
            assert b.files()["log.txt"] == b"line 1\nlin"
            log.write_bytes(b"")
            await settle([a, b])
            assert b.files()["log.txt"] == b""
        finally:
            await close(a, b)


async def test_deleted_folder_restored_as_it_was(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            (a.folder / "album").mkdir(parents=True)
            (a.folder / "album" / "one.jpg").write_bytes(b"1")
            (a.folder / "album" / "two.jpg").write_bytes(b"2")
            await settle([a, b])
            (a.folder / "album" / "two.jpg").write_bytes(b"2, edited")
            await settle([a, b])
            moment = SystemClock().now_ms()
            await asyncio.sleep(0.01)
            shutil.rmtree(b.folder / "album")
            await settle([b, a])
            assert a.files() == {}
            sync = a.node.share(share)
            items = select(sync, "album", at_ms=moment)
            assert await restore(sync, "album", items, a.folder / "album") == 2
            await settle([a, b])
            assert b.files() == {"album/one.jpg": b"1", "album/two.jpg": b"2, edited"}
            assert any((a.folder / ".drift" / "trash").rglob("one.jpg"))
        finally:
            await close(a, b)


async def test_executable_bit_and_mtime_arrive_on_the_other_device(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            await share_between(a, b)
            script = a.folder / "run.sh"
            script.write_bytes(b"#!/bin/sh\necho hi\n")
            os.utime(script, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_000_000))
            await settle([a, b])
            theirs = b.folder / "run.sh"
            assert not os.access(theirs, os.X_OK)
            assert theirs.stat().st_mtime_ns == 1_600_000_000_123_000_000

            script.chmod(0o755)  # only the mode changes: same bytes, same mtime
            await settle([a, b])
            assert os.access(theirs, os.X_OK)
            assert theirs.read_bytes() == b"#!/bin/sh\necho hi\n"

            theirs.chmod(0o644)  # and back, from the other side
            await settle([b, a])
            assert not os.access(script, os.X_OK)
        finally:
            await close(a, b)
