"""The share state's files table: what ``files()`` answers is what a fresh reader finds."""

from __future__ import annotations

from pathlib import Path

import pytest

from peer.device.store import ShareStore, SyncedFile


def _row(path: str, size: int = 1) -> SyncedFile:
    return SyncedFile(path, path, f"e-{path}", "file", size, 7, 9, False, b"c", "v1", 3)


def test_files_follow_writes_forgets_and_rollbacks(tmp_path: Path) -> None:
    store = ShareStore(tmp_path / "state.db")
    assert store.files() == {}
    store.put_file(_row("a"))
    store.put_file(_row("b"))
    store.put_file(_row("a", size=5))
    store.forget_file("b")

    def undone() -> None:
        with store.transaction():
            store.put_file(_row("c"))
            store.forget_file("a")
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        undone()
    answer = store.files()
    answer.pop("a")  # the caller's copy: changing it changes nothing stored
    fresh = ShareStore(tmp_path / "state.db")
    assert store.files() == fresh.files() == {"a": _row("a", size=5)}
    store.close()
    fresh.close()
