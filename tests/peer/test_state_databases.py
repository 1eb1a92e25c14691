"""The state databases seam: production keeps each share's state in a durable file; the
in-memory databases of simulations keep exactly what was committed across a crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from peer.device.home import Home
from peer.device.store import ShareStore
from peer.engine.shares import open_state, state_path
from seams.memorydb import MemoryStateDatabases

SHARE = "ab" * 16


def test_production_state_is_a_durable_wal_file(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    store = open_state(home, SHARE)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync per commit
    store.set("counter", 7)
    store.close()
    path = state_path(home, SHARE)
    assert path.is_file()
    with sqlite3.connect(path) as other:  # another process would read the same
        (value,) = other.execute("SELECT value FROM meta WHERE key = 'counter'").fetchone()
    assert value
    assert ShareStore(path).get("counter") == 7


def test_memory_state_outlives_the_connection_and_writes_no_file(tmp_path: Path) -> None:
    databases = MemoryStateDatabases()
    path = tmp_path / "state.db"
    store = ShareStore(path, databases)
    store.set("cursor", 41)
    store.close()  # a clean stop of the daemon
    again = ShareStore(path, databases)  # the restart
    assert again.get("cursor") == 41
    assert not path.exists()
    again.close()


def test_a_crash_keeps_committed_transactions_and_drops_the_open_one(tmp_path: Path) -> None:
    databases = MemoryStateDatabases()
    path = tmp_path / "state.db"
    store = ShareStore(path, databases)
    store.set("counter", 1)
    with store.transaction():
        store.set("cursor", 5)
    batch = store.batch()
    batch.__enter__()  # a pass's batch, open across awaits when the power goes
    store.set("counter", 2)
    store.set("pending", True)

    databases.power_cut()
    # The daemon's finally blocks still run as it dies: their COMMIT must not land.
    with pytest.raises(sqlite3.ProgrammingError):
        batch.__exit__(None, None, None)

    restarted = ShareStore(path, databases)
    assert restarted.get("counter") == 1
    assert restarted.get("cursor") == 5
    assert restarted.get("pending") is None
    restarted.close()


def test_a_backup_taken_inside_a_transaction_restores_the_committed_state(
    tmp_path: Path,
) -> None:
    databases = MemoryStateDatabases()
    path = tmp_path / "state.db"
    store = ShareStore(path, databases)
    store.set("counter", 1)
    with store.batch():
        store.set("counter", 2)
        images = databases.committed()  # the daemon is mid-pass
    assert store.get("counter") == 2
    store.close()
    later = ShareStore(tmp_path / "later" / "state.db", databases)  # a share joined after
    later.set("joined", True)
    later.close()

    databases.replace(images)

    restored = ShareStore(path, databases)
    assert restored.get("counter") == 1
    assert ShareStore(tmp_path / "later" / "state.db", databases).get("joined") is None
    restored.close()


def test_two_devices_with_the_same_paths_keep_separate_databases(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first, second = MemoryStateDatabases(), MemoryStateDatabases()
    ShareStore(path, first).set("who", "first")
    assert ShareStore(path, second).get("who") is None
    assert ShareStore(path, first).get("who") == "first"
