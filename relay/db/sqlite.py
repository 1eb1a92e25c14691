"""SQLite databases: a file (the embedded default) or in memory (simulations), run on the loop.

Statements run inline on the event loop thread: they are indexed lookups and small inserts that
take microseconds, and measured, a hop to a worker thread per statement (what aiosqlite does)
cost more than the statement and capped appends at ~140/s. The one slow step, the commit's
fsync, runs in a worker thread.

Durability: the file database runs in WAL mode with ``synchronous`` FULL by default, so a commit
returns only after the WAL is fsynced (NORMAL is offered: it survives a process crash but may
lose the last commits on power loss). SQLite has one writer: every write transaction starts with
``BEGIN IMMEDIATE`` under one asyncio lock, which is also the per-share row lock the log needs.
Readers use their own connections and see the last committed snapshot (WAL).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from relay.db.base import DatabaseError, Dialect, Row, UniqueViolation
from relay.db.migrations import migrate

Runner = Callable[[str, tuple[object, ...], str], Awaitable[object]]

_READERS = 4


def _translate(exc: sqlite3.Error) -> DatabaseError:
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
        return UniqueViolation(str(exc))
    return DatabaseError(str(exc))


class SqliteTx:
    """A transaction over one SQLite connection, whichever way its statements are run."""

    def __init__(self, run: Runner) -> None:
        self._run = run

    async def execute(self, sql: str, *args: object) -> int:
        return int(await self._run(sql, args, "rowcount"))  # type: ignore[call-overload]

    async def executemany(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        await self._run(sql, tuple(rows), "many")

    async def fetchone(self, sql: str, *args: object) -> Row | None:
        return await self._run(sql, args, "one")  # type: ignore[return-value]

    async def fetchall(self, sql: str, *args: object) -> list[Row]:
        return await self._run(sql, args, "all")  # type: ignore[return-value]

    async def select_for_update(self, sql: str, *args: object) -> Row | None:
        # The write transaction began IMMEDIATE: it already holds the database's write lock.
        return await self.fetchone(sql, *args)


def _run_sync(conn: sqlite3.Connection, sql: str, args: tuple[object, ...], mode: str) -> object:
    try:
        if mode == "many":
            conn.executemany(sql, args)  # type: ignore[arg-type]
            return None
        cur = conn.execute(sql, args)
        if mode == "one":
            return cur.fetchone()
        if mode == "all":
            return cur.fetchall()
        return cur.rowcount
    except sqlite3.Error as exc:
        raise _translate(exc) from exc


def _pragmas(synchronous: str) -> list[str]:
    return [
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={synchronous}",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=10000",
    ]


class SqliteDatabase:
    """A file database: statements inline on the loop, commits grouped and fsynced in a thread.

    Write transactions are short bursts of indexed statements that take microseconds, cheaper to
    run on the loop than to hand to a thread one by one; what takes time is the commit's fsync,
    which runs in a worker thread. Writers that arrive while one is running join the same SQLite
    transaction, each inside its own SAVEPOINT (so one writer's error rolls back only its own
    changes), and one COMMIT makes the whole group durable before any of them returns: with
    ``synchronous=FULL`` nothing is acknowledged before it is on disk, and concurrent appends
    share the fsync. Reads run on a small pool of their own connections, each read transaction
    on the last committed snapshot (WAL); pages are bounded in rows and bytes.
    """

    dialect: Dialect = "sqlite"
    #: Most writers in one group: bounds how long the first waits for the shared commit.
    GROUP_MAX = 256

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.path = path
        self.synchronous = synchronous
        self._writer: sqlite3.Connection | None = None
        self._body_lock = asyncio.Lock()
        self._waiting = 0
        self._group: asyncio.Future[None] | None = None
        self._group_size = 0
        self._orphan_commits: set[asyncio.Task[None]] = set()
        self._readers: asyncio.Queue[sqlite3.Connection] = asyncio.Queue()
        self._all: list[sqlite3.Connection] = []

    async def open(self) -> SqliteDatabase:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = await asyncio.to_thread(self._connect)
            async with self.write() as tx:
                await migrate(tx, self.dialect)
            for _ in range(_READERS):
                self._readers.put_nowait(await asyncio.to_thread(self._connect))
        except sqlite3.Error as exc:
            await self.close()
            raise DatabaseError(f"cannot open SQLite database {self.path}: {exc}") from exc
        return self

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._all.append(conn)
        for pragma in _pragmas(self.synchronous):
            conn.execute(pragma)
        return conn

    async def _inline(self, sql: str, args: tuple[object, ...], mode: str) -> object:
        assert self._writer is not None
        return _run_sync(self._writer, sql, args, mode)

    @asynccontextmanager
    async def write(self, group: str | None = None) -> AsyncIterator[SqliteTx]:
        # One writer at a time whatever the group: every writer joins the open group.
        if self._writer is None:
            raise DatabaseError("database is closed")
        self._waiting += 1
        try:
            await self._body_lock.acquire()
        except BaseException:
            self._waiting -= 1
            self._commit_if_orphaned()
            raise
        self._waiting -= 1
        try:
            if self._group is None:
                await self._inline("BEGIN IMMEDIATE", (), "rowcount")
                self._group = asyncio.get_running_loop().create_future()
                self._group_size = 0
            group = self._group
            await self._inline("SAVEPOINT writer", (), "rowcount")
            try:
                yield SqliteTx(self._inline)
            except BaseException:
                await self._inline("ROLLBACK TO writer", (), "rowcount")
                await self._inline("RELEASE writer", (), "rowcount")
                if self._waiting == 0:
                    await self._commit_group()
                raise
            await self._inline("RELEASE writer", (), "rowcount")
            self._group_size += 1
            if self._waiting == 0 or self._group_size >= self.GROUP_MAX:
                await self._commit_group()
        finally:
            self._body_lock.release()
        # The group commits when its last writer is done; until then this change is not durable.
        await asyncio.shield(group)

    def _commit_if_orphaned(self) -> None:
        """A writer cancelled while waiting may have been the one an open group counted on to
        commit it: commit the group from a task of its own then."""
        if self._group is not None and self._waiting == 0 and not self._body_lock.locked():
            task = asyncio.get_running_loop().create_task(self._commit_orphan())
            self._orphan_commits.add(task)
            task.add_done_callback(self._orphan_commits.discard)

    async def _commit_orphan(self) -> None:
        async with self._body_lock:
            if self._group is not None and self._waiting == 0:
                with contextlib.suppress(DatabaseError):  # its writers get the error instead
                    await self._commit_group()

    async def _commit_group(self) -> None:
        """COMMIT the open group (fsync in a thread); runs while holding the body lock."""
        group, self._group = self._group, None
        if group is None:
            return
        assert self._writer is not None
        try:
            await asyncio.shield(asyncio.to_thread(_run_sync, self._writer, "COMMIT", (), "rc"))
        except BaseException as exc:
            with contextlib.suppress(DatabaseError):
                _run_sync(self._writer, "ROLLBACK", (), "rowcount")
            group.set_exception(
                exc if isinstance(exc, DatabaseError) else DatabaseError(f"commit failed: {exc}")
            )
            group.exception()  # retrieved here; each writer re-raises it from the future
            raise
        group.set_result(None)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqliteTx]:
        conn = await self._readers.get()

        async def run(sql: str, args: tuple[object, ...], mode: str) -> object:
            return _run_sync(conn, sql, args, mode)

        try:
            await run("BEGIN", (), "rowcount")
            try:
                yield SqliteTx(run)
            finally:
                await run("COMMIT", (), "rowcount")
        finally:
            self._readers.put_nowait(conn)

    async def ping(self) -> None:
        async with self.read() as tx:
            await tx.fetchone("SELECT 1")

    async def close(self) -> None:
        conns, self._all, self._writer = self._all, [], None
        for conn in conns:
            conn.close()


class MemoryDatabase:
    """An in-memory SQLite database run inline on the event loop: deterministic, for simulations.

    Statements never leave the loop's thread, so a seeded simulation orders them exactly; one
    lock serializes transactions, as SQLite's single writer would.
    """

    dialect: Dialect = "sqlite"

    def __init__(self) -> None:
        self._conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._lock = asyncio.Lock()

    async def open(self) -> MemoryDatabase:
        async with self.write() as tx:
            await migrate(tx, self.dialect)
        return self

    async def _run(self, sql: str, args: tuple[object, ...], mode: str) -> object:
        return _run_sync(self._conn, sql, args, mode)

    @asynccontextmanager
    async def _tx(self, begin: str) -> AsyncIterator[SqliteTx]:
        async with self._lock:
            await self._run(begin, (), "rowcount")
            try:
                yield SqliteTx(self._run)
            except BaseException:
                await self._run("ROLLBACK", (), "rowcount")
                raise
            await self._run("COMMIT", (), "rowcount")

    def write(self, group: str | None = None) -> AsyncIterator[SqliteTx]:  # type: ignore[override]
        return self._tx("BEGIN IMMEDIATE")  # type: ignore[return-value]

    def read(self) -> AsyncIterator[SqliteTx]:  # type: ignore[override]
        return self._tx("BEGIN")  # type: ignore[return-value]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._conn.close()
