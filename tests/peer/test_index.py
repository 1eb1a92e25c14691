"""The local index: entries, moves, per-file errors that survive a restart, schema migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peer.fs import FileKind
from peer.local.errors import IndexDbError, IndexTooNewError, LocalError
from peer.local.index import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Chunk,
    FileError,
    IndexEntry,
    LocalIndex,
    SyncState,
)
from seams import InlineExecutor, ThreadExecutor


def entry(path: str, **overrides: object) -> IndexEntry:
    fields: dict[str, object] = {
        "path": path,
        "kind": FileKind.FILE,
        "size": 3,
        "mtime_ns": 1_000,
        "inode": 7,
        "executable": False,
        "content_hash": b"h" * 32,
        "indexed_at_ns": 2_000,
        "state": SyncState.NEW,
    }
    fields.update(overrides)
    return IndexEntry(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def index() -> AsyncIterator[LocalIndex]:
    idx = await LocalIndex.open(":memory:", InlineExecutor())
    yield idx
    await idx.close()


async def test_put_get_and_entries_under(index: LocalIndex) -> None:
    await index.put([entry("a"), entry("a/b"), entry("a/b/c"), entry("ab"), entry("A/x")])
    got = await index.get("a/b")
    assert got == entry("a/b")
    assert await index.get("nope") is None
    assert sorted(await index.entries("a")) == ["a", "a/b", "a/b/c"]
    assert sorted(await index.entries()) == ["A/x", "a", "a/b", "a/b/c", "ab"]


async def test_observe_keeps_what_the_engine_recorded(index: LocalIndex) -> None:
    await index.put([entry("f")])
    chunks = (Chunk(b"\x01" * 32, 10), Chunk(b"\x02" * 32, 20))
    await index.mark_synced("f", node_id="n1", version=b"v" * 32, chunks=chunks)
    await index.observe([entry("f", size=30, mtime_ns=5_000, state=SyncState.MODIFIED)])
    got = await index.get("f")
    assert got is not None
    assert (got.size, got.state, got.node_id, got.version, got.chunks) == (
        30,
        SyncState.MODIFIED,
        "n1",
        b"v" * 32,
        chunks,
    )
    assert (await index.by_node("n1")) == got
    with pytest.raises(IndexDbError):
        await index.mark_synced("missing", node_id="n", version=None, chunks=())


async def test_move_rekeys_a_subtree_only(index: LocalIndex) -> None:
    await index.put(
        [entry("d"), entry("d/x", node_id="nx"), entry("d_x"), entry("D/y"), entry("e/old")]
    )
    await index.record_error(FileError("d/x", "read", "denied", 1, None))
    await index.record_name("d/x", "x?")
    await index.move("d", "e")
    assert sorted(await index.entries()) == ["D/y", "d_x", "e", "e/x"]
    moved = await index.get("e/x")
    assert moved is not None
    assert moved.node_id == "nx"
    assert [e.path for e in await index.errors()] == ["e/x"]
    assert await index.original_name("e/x") == "x?"


async def test_states_remove_and_names(index: LocalIndex) -> None:
    await index.put([entry("a"), entry("b")])
    await index.set_state(["a", "b"], SyncState.CONFLICT)
    assert {e.state for e in (await index.entries()).values()} == {SyncState.CONFLICT}
    await index.remove(["a"])
    assert list(await index.entries()) == ["b"]
    await index.record_name("CON_", "CON")
    assert await index.original_name("CON_") == "CON"
    await index.forget_name("CON_")
    assert await index.original_name("CON_") is None


async def test_errors_keep_their_first_time_and_survive_a_restart(tmp_path: Path) -> None:
    executor = ThreadExecutor(2)
    db = str(tmp_path / "index.db")
    try:
        idx = await LocalIndex.open(db, executor)
        await idx.put([entry("z"), entry("b")])
        first = await idx.record_error(FileError("z", "read", "permission denied", 100, 200))
        again = await idx.record_error(FileError("z", "read", "still denied", 150, 400))
        await idx.record_error(FileError("b", "write", "disk full", 120, None))
        assert first.since_ms == again.since_ms == 100
        assert again.reason == "still denied"
        await idx.close()

        reopened = await LocalIndex.open(db, executor)
        assert await reopened.errors() == [
            FileError("b", "write", "disk full", 120, None),
            FileError("z", "read", "still denied", 100, 400),
        ]
        await reopened.mark_synced("b", node_id="nb", version=None, chunks=())
        await reopened.clear_error("z")
        assert await reopened.errors() == []
        mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        await reopened.close()
    finally:
        executor.shutdown()


async def test_migrates_an_old_schema_keeping_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    conn = sqlite3.connect(db)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version=1")
    conn.execute(
        "INSERT INTO files (path, kind, size, mtime_ns, inode, executable, content_hash, "
        "indexed_at_ns, state) VALUES ('old', 'file', 1, 2, 3, 0, NULL, 4, 'synced')"
    )
    conn.commit()
    conn.close()
    idx = await LocalIndex.open(str(db), InlineExecutor())
    assert await idx.schema_version() == SCHEMA_VERSION == 3
    got = await idx.get("old")
    assert got is not None
    assert got.state is SyncState.SYNCED
    await idx.record_name("old", "o:ld")
    await idx.close()


async def test_refuses_a_newer_schema_and_a_corrupt_file(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(IndexTooNewError, match="upgrade driftsync"):
        await LocalIndex.open(str(newer), InlineExecutor())
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(IndexDbError, match="move it aside") as info:
        await LocalIndex.open(str(garbage), InlineExecutor())
    assert isinstance(info.value, LocalError)
    assert garbage.read_bytes().startswith(b"this is not")
