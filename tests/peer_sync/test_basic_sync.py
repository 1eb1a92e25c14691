"""Two and three devices through a real relay on loopback: the everyday operations."""

from __future__ import annotations

import os
from pathlib import Path

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
