"""The local index: one SQLite database per share, what the peer knows about each local path.

Per path: the node id in the share's tree, what the disk looked like when last observed (kind,
inode, size, mtime, exec bit, a BLAKE3 hash of the content for change detection), when that was
(for racy-mtime checks), the chunk list and version (manifest or block id) it was last synced as,
and one sync-state word. Per-file errors are rows too, so they survive a restart and
``drift status`` can list them.

The database is used from one thread at a time (a lock) through the injected ``seams.Executor``:
a thread pool for real, inline in simulations. WAL mode, ``synchronous=FULL``.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import msgpack

from peer.fs.base import FileKind
from peer.local.errors import IndexDbError, IndexTooNewError
from seams import Executor

T = TypeVar("T")


class SyncState(enum.StrEnum):
    """One word per path, the same words in the index, the engine and ``drift status``."""

    SYNCED = "synced"  # disk, index and the share's tree agree
    NEW = "new"  # on disk, not yet in the tree
    MODIFIED = "modified"  # changed on disk since it was synced
    DELETED = "deleted"  # gone from disk, the deletion not yet published
    CONFLICT = "conflict"  # changed here and remotely; a conflicted copy is due
    ERROR = "error"  # the last attempt failed; see the path's FileError
    IGNORED = "ignored"  # was synced, now matched by an ignore rule: left alone both ways


@dataclass(frozen=True, slots=True)
class Chunk:
    chunk_id: bytes
    size: int


@dataclass(frozen=True, slots=True)
class IndexEntry:
    path: str
    kind: FileKind
    size: int
    mtime_ns: int
    inode: int
    executable: bool
    content_hash: bytes | None  # BLAKE3 of the bytes (of the target, for a symlink); None: a dir
    indexed_at_ns: int  # wall clock when this observation was made
    state: SyncState
    symlink_target: str | None = None
    node_id: str | None = None
    version: bytes | None = None  # manifest or single-block id it was synced as
    chunks: tuple[Chunk, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class FileError:
    """A per-file failure, kept until the path succeeds: ``since_ms`` is the first failure."""

    path: str
    op: str
    reason: str
    since_ms: int
    retry_at_ms: int | None = None


MIGRATIONS: tuple[str, ...] = (
    # 1: files and their errors
    """
    CREATE TABLE files (
        path TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        executable INTEGER NOT NULL,
        content_hash BLOB,
        indexed_at_ns INTEGER NOT NULL,
        state TEXT NOT NULL,
        symlink_target TEXT,
        node_id TEXT,
        version BLOB,
        chunks BLOB
    ) WITHOUT ROWID;
    CREATE INDEX files_node ON files(node_id);
    CREATE TABLE file_errors (
        path TEXT PRIMARY KEY,
        op TEXT NOT NULL,
        reason TEXT NOT NULL,
        since_ms INTEGER NOT NULL,
        retry_at_ms INTEGER
    ) WITHOUT ROWID;
    """,
    # 2: local names that stand in for names unsafe on this OS (peer.local.names)
    """
    CREATE TABLE name_map (
        local_path TEXT PRIMARY KEY,
        original_name TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # 3: the sync engine's side of a synced path: where the share's tree has it (a name unsafe
    # here is stored under another local name; a local move is pending until published) and
    # the tree's version id it was synced as
    """
    ALTER TABLE files ADD COLUMN tree_path TEXT;
    ALTER TABLE files ADD COLUMN version_id TEXT;
    CREATE INDEX files_tree ON files(tree_path);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_COLUMNS = (
    "path, kind, size, mtime_ns, inode, executable, content_hash, indexed_at_ns, state, "
    "symlink_target, node_id, version, chunks"
)


def _pack_chunks(chunks: tuple[Chunk, ...]) -> bytes | None:
    if not chunks:
        return None
    return msgpack.packb([[c.chunk_id, c.size] for c in chunks])


def _unpack_chunks(blob: bytes | None) -> tuple[Chunk, ...]:
    if not blob:
        return ()
    return tuple(Chunk(bytes(cid), int(size)) for cid, size in msgpack.unpackb(blob))


def _row(entry: IndexEntry) -> tuple[object, ...]:
    return (
        entry.path,
        entry.kind.value,
        entry.size,
        entry.mtime_ns,
        entry.inode,
        int(entry.executable),
        entry.content_hash,
        entry.indexed_at_ns,
        entry.state.value,
        entry.symlink_target,
        entry.node_id,
        entry.version,
        _pack_chunks(entry.chunks),
    )


_KINDS = {k.value: k for k in FileKind}  # a dict lookup: Enum(value) is slow per row
_STATES = {s.value: s for s in SyncState}


IndexRow = tuple  # type: ignore[type-arg]  # the columns of _COLUMNS, in that order
"""A row as stored: path, kind, size, mtime_ns, inode, executable, content_hash, indexed_at_ns,
state, symlink_target, node_id, version, chunks."""


def entry_of(row: IndexRow) -> IndexEntry:
    return _entry(row)


def _entry(row: tuple) -> IndexEntry:  # type: ignore[type-arg]
    return IndexEntry(
        path=row[0],
        kind=_KINDS[row[1]],
        size=row[2],
        mtime_ns=row[3],
        inode=row[4],
        executable=bool(row[5]),
        content_hash=row[6],
        indexed_at_ns=row[7],
        state=_STATES[row[8]],
        symlink_target=row[9],
        node_id=row[10],
        version=row[11],
        chunks=_unpack_chunks(row[12]),
    )


# Before the engine used this index, a share's state database kept its own ``files`` table (what
# was last synced at each tree path) and ``file_errors``. Such a database is adopted in the same
# transaction as the migrations: its rows become synced index entries, its errors carry over.
_LEGACY_RENAME = """
ALTER TABLE files RENAME TO legacy_files;
ALTER TABLE file_errors RENAME TO legacy_file_errors
"""
_LEGACY_ADOPT = """
INSERT OR REPLACE INTO files (path, kind, size, mtime_ns, inode, executable, content_hash,
    indexed_at_ns, state, symlink_target, node_id, version, chunks, tree_path, version_id)
SELECT disk_path, kind, size, mtime_ns, inode, executable, NULL, synced_ns, 'synced', NULL,
    entry, content, NULL, path, version FROM legacy_files;
INSERT OR REPLACE INTO file_errors (path, op, reason, since_ms, retry_at_ms)
SELECT path, op, reason, since_ms, retry_at_ms FROM legacy_file_errors;
DROP TABLE legacy_files;
DROP TABLE legacy_file_errors
"""


def _is_legacy_state(conn: sqlite3.Connection) -> bool:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(files)")}
    return "disk_path" in columns


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _subtree(column: str) -> str:
    """SQL for "``column`` is ? or lies below it" given (path, path + "/", path + "0").

    A byte-order range rather than LIKE, which is case-insensitive in SQLite; "0" follows "/".
    """
    return f"({column} = ? OR ({column} > ? AND {column} < ?))"


def _subtree_args(path: str) -> tuple[str, str, str]:
    return (path, path + "/", path + "0")


class _Db:
    """The blocking half: a connection behind a lock. Every method is one transaction."""

    def __init__(self, location: str, conn: sqlite3.Connection | None = None) -> None:
        """Open ``location``, or use ``conn`` (a share's state database that holds the index
        beside the rest of the share's state: one file, one source of truth)."""
        self.owned = conn is None
        self.conn = conn or sqlite3.connect(
            location, check_same_thread=False, isolation_level=None
        )
        try:
            if self.owned:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except BaseException as exc:
            if self.owned:
                with contextlib.suppress(Exception):
                    self.conn.close()
            if not isinstance(exc, sqlite3.DatabaseError):
                raise
            raise IndexDbError(
                f"the local index at {location} cannot be opened ({exc}); "
                "move it aside and the next scan rebuilds it"
            ) from exc
        self.lock = threading.RLock()

    def _migrate(self) -> None:
        (version,) = self.conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise IndexTooNewError(version, SCHEMA_VERSION)
        if version == 0 and _is_legacy_state(self.conn):
            self._adopt_legacy_state()
            return
        for number in range(version + 1, SCHEMA_VERSION + 1):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                _run_script(self.conn, MIGRATIONS[number - 1])
                self.conn.execute(f"PRAGMA user_version={number}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def _adopt_legacy_state(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            _run_script(self.conn, _LEGACY_RENAME)
            for script in MIGRATIONS:
                _run_script(self.conn, script)
            _run_script(self.conn, _LEGACY_ADOPT)
            self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self.lock:
            if self.conn.in_transaction:
                return fn(self.conn)  # inside the state database's batch: part of its commit
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self.conn)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
            return result

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self.lock:
            return fn(self.conn)

    def close(self) -> None:
        with self.lock:
            if self.owned:
                self.conn.close()


class LocalIndex:
    """The async face the engine uses; one instance per share, owned by the share's task."""

    def __init__(self, db: _Db, executor: Executor) -> None:
        self._db = db
        self._executor = executor

    @classmethod
    async def open(cls, location: str, executor: Executor) -> LocalIndex:
        """Open (creating or migrating) the index at ``location``; ``":memory:"`` for tests."""
        return cls(await executor.run(_Db, location), executor)

    @classmethod
    def within(cls, conn: sqlite3.Connection, executor: Executor) -> LocalIndex:
        """The index inside an open database (a share's state), migrated as needed; closing
        the index leaves the connection to its owner."""
        return cls(_Db("the share's state database", conn), executor)

    async def close(self) -> None:
        await self._executor.run(self._db.close)

    async def schema_version(self) -> int:
        return await self._read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._executor.run(self._db.read, fn)

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._executor.run(self._db.tx, fn)

    # -- files -------------------------------------------------------------------------------

    async def get(self, path: str) -> IndexEntry | None:
        def q(c: sqlite3.Connection) -> IndexEntry | None:
            row = c.execute(f"SELECT {_COLUMNS} FROM files WHERE path = ?", (path,)).fetchone()
            return None if row is None else _entry(row)

        return await self._read(q)

    async def entries(self, under: str = "") -> dict[str, IndexEntry]:
        """Every entry, or those at and below ``under``."""
        return await self._executor.run(self.entries_blocking, under)

    def entries_blocking(self, under: str = "") -> dict[str, IndexEntry]:
        """``entries`` for code already running in the executor (the scanner's walk)."""

        def q(c: sqlite3.Connection) -> dict[str, IndexEntry]:
            if under:
                rows = c.execute(
                    f"SELECT {_COLUMNS} FROM files WHERE {_subtree('path')}",
                    _subtree_args(under),
                )
            else:
                rows = c.execute(f"SELECT {_COLUMNS} FROM files")
            return {row[0]: _entry(row) for row in rows}

        return self._db.read(q)

    def rows_blocking(self, under: str = "") -> dict[str, IndexRow]:
        """Like ``entries_blocking`` but the bare rows (``entry_of`` makes one an entry): a scan
        of an unchanged folder compares them and builds no entry at all."""

        def q(c: sqlite3.Connection) -> dict[str, IndexRow]:
            if under:
                rows = c.execute(
                    f"SELECT {_COLUMNS} FROM files WHERE {_subtree('path')}",
                    _subtree_args(under),
                )
            else:
                rows = c.execute(f"SELECT {_COLUMNS} FROM files")
            return {row[0]: row for row in rows}

        return self._db.read(q)

    async def by_node(self, node_id: str) -> IndexEntry | None:
        def q(c: sqlite3.Connection) -> IndexEntry | None:
            row = c.execute(
                f"SELECT {_COLUMNS} FROM files WHERE node_id = ?", (node_id,)
            ).fetchone()
            return None if row is None else _entry(row)

        return await self._read(q)

    async def put(self, entries: Iterable[IndexEntry]) -> None:
        """Insert or replace whole entries."""
        rows = [_row(e) for e in entries]
        await self._tx(
            lambda c: c.executemany(
                f"INSERT OR REPLACE INTO files ({_COLUMNS}) VALUES ({', '.join('?' * 13)})", rows
            )
        )

    async def observe(self, entries: Iterable[IndexEntry]) -> None:
        """Record what the disk looks like, keeping node id, version and chunks of known paths."""
        rows = [_row(e)[:10] for e in entries]
        sql = (
            "INSERT INTO files (path, kind, size, mtime_ns, inode, executable, content_hash, "
            "indexed_at_ns, state, symlink_target) VALUES (?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(path) DO UPDATE SET kind=excluded.kind, size=excluded.size, "
            "mtime_ns=excluded.mtime_ns, inode=excluded.inode, executable=excluded.executable, "
            "content_hash=excluded.content_hash, indexed_at_ns=excluded.indexed_at_ns, "
            "state=excluded.state, symlink_target=excluded.symlink_target"
        )
        await self._tx(lambda c: c.executemany(sql, rows))

    async def move(self, src: str, dst: str) -> None:
        """Re-key ``src`` (and everything below it) as ``dst``, keeping all it knows."""

        def tx(c: sqlite3.Connection) -> None:
            for table, column in (
                ("files", "path"),
                ("file_errors", "path"),
                ("name_map", "local_path"),
            ):
                c.execute(f"DELETE FROM {table} WHERE {_subtree(column)}", _subtree_args(dst))
                c.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                    f"WHERE {_subtree(column)}",
                    (dst, len(src) + 1, *_subtree_args(src)),
                )

        await self._tx(tx)

    async def set_state(self, paths: Iterable[str], state: SyncState) -> None:
        rows = [(state.value, p) for p in paths]
        await self._tx(lambda c: c.executemany("UPDATE files SET state = ? WHERE path = ?", rows))

    async def mark_synced(
        self, path: str, *, node_id: str, version: bytes | None, chunks: tuple[Chunk, ...]
    ) -> None:
        """The engine published or applied this path: it is ``synced`` as ``version``."""

        def tx(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "UPDATE files SET state = ?, node_id = ?, version = ?, chunks = ? WHERE path = ?",
                (SyncState.SYNCED.value, node_id, version, _pack_chunks(chunks), path),
            )
            if cur.rowcount == 0:
                raise IndexDbError(f"mark_synced: {path!r} is not in the index")
            c.execute("DELETE FROM file_errors WHERE path = ?", (path,))

        await self._tx(tx)

    async def detach(self, paths: Iterable[str]) -> None:
        """What is at these paths is no longer the tree entry their rows name: forget the entry
        and what was synced of it (the engine publishes the paths as new)."""
        rows = [(p,) for p in paths]
        if not rows:
            return
        await self._tx(
            lambda c: c.executemany(
                "UPDATE files SET node_id = NULL, version = NULL, chunks = NULL, "
                "tree_path = NULL, version_id = NULL WHERE path = ?",
                rows,
            )
        )

    async def remove(self, paths: Iterable[str]) -> None:
        rows = [(p,) for p in paths]

        def tx(c: sqlite3.Connection) -> None:
            c.executemany("DELETE FROM files WHERE path = ?", rows)
            c.executemany("DELETE FROM file_errors WHERE path = ?", rows)

        await self._tx(tx)

    # -- per-file errors ---------------------------------------------------------------------

    async def record_error(self, error: FileError) -> FileError:
        """Store a failure; a path already failing keeps its first ``since_ms``. Returns the row."""

        def tx(c: sqlite3.Connection) -> FileError:
            c.execute(
                "INSERT INTO file_errors (path, op, reason, since_ms, retry_at_ms) "
                "VALUES (?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET op=excluded.op, "
                "reason=excluded.reason, retry_at_ms=excluded.retry_at_ms",
                (error.path, error.op, error.reason, error.since_ms, error.retry_at_ms),
            )
            row = c.execute(
                "SELECT path, op, reason, since_ms, retry_at_ms FROM file_errors WHERE path = ?",
                (error.path,),
            ).fetchone()
            return FileError(*row)

        return await self._tx(tx)

    async def clear_error(self, path: str) -> None:
        await self.clear_errors([path])

    async def clear_errors(self, paths: Iterable[str]) -> None:
        """Forget the failures of these paths (they succeeded), in one transaction."""
        rows = [(p,) for p in paths]
        await self._tx(lambda c: c.executemany("DELETE FROM file_errors WHERE path = ?", rows))

    async def errors(self) -> list[FileError]:
        """Every failing path, sorted by path."""
        return await self._read(
            lambda c: [
                FileError(*row)
                for row in c.execute(
                    "SELECT path, op, reason, since_ms, retry_at_ms FROM file_errors ORDER BY path"
                )
            ]
        )

    # -- names kept for their originals -------------------------------------------------------

    async def record_name(self, local_path: str, original_name: str) -> None:
        """``local_path`` is a safe stand-in (``peer.local.names``) for ``original_name``."""
        await self._tx(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO name_map (local_path, original_name) VALUES (?, ?)",
                (local_path, original_name),
            )
        )

    async def original_name(self, local_path: str) -> str | None:
        def q(c: sqlite3.Connection) -> str | None:
            row = c.execute(
                "SELECT original_name FROM name_map WHERE local_path = ?", (local_path,)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._read(q)

    async def forget_name(self, local_path: str) -> None:
        await self._tx(
            lambda c: c.execute("DELETE FROM name_map WHERE local_path = ?", (local_path,))
        )
