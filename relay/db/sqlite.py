"""SQLite databases: a file through aiosqlite (production), or in memory on the loop (simulations).

Durability: the file database runs in WAL mode with ``synchronous`` FULL by default, so a commit
returns only after the WAL is fsynced (NORMAL is offered: it survives a process crash but may
lose the last commits on power loss). SQLite has one writer: every write transaction starts with
``BEGIN IMMEDIATE`` under one asyncio lock, which is also the per-share row lock the log needs.
Readers use their own connections and see the last committed snapshot (WAL).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from relay.db.base import DatabaseError, Dialect, Row, UniqueViolation
from relay.db.migrations import migrate

Runner = Callable[[str, tuple[object, ...], str], Awaitable[object]]

_READERS = 2


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
    """A file database through aiosqlite: one writer connection and a few reader connections."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.path = path
        self.synchronous = synchronous
        self._writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all: list[aiosqlite.Connection] = []

    async def open(self) -> SqliteDatabase:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = await self._connect()
            async with self.write() as tx:
                await migrate(tx, self.dialect)
            for _ in range(_READERS):
                self._readers.put_nowait(await self._connect())
        except sqlite3.Error as exc:
            await self.close()
            raise DatabaseError(f"cannot open SQLite database {self.path}: {exc}") from exc
        return self

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._all.append(conn)
        for pragma in _pragmas(self.synchronous):
            await conn.execute(pragma)
        return conn

    @staticmethod
    def _runner(conn: aiosqlite.Connection) -> Runner:
        async def run(sql: str, args: tuple[object, ...], mode: str) -> object:
            # One hop to the connection's thread per statement.
            try:
                if mode == "many":
                    await conn.executemany(sql, args)  # type: ignore[arg-type]
                    return None
                if mode == "rowcount":
                    cursor = await conn.execute(sql, args)
                    return cursor.rowcount
                rows = list(await conn.execute_fetchall(sql, args))
                if mode == "one":
                    return tuple(rows[0]) if rows else None
                return [tuple(r) for r in rows]
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

        return run

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqliteTx]:
        conn = self._writer
        if conn is None:
            raise DatabaseError("database is closed")
        async with self._write_lock:
            run = self._runner(conn)
            await run("BEGIN IMMEDIATE", (), "rowcount")
            try:
                yield SqliteTx(run)
            except BaseException:
                await asyncio.shield(run("ROLLBACK", (), "rowcount"))
                raise
            await asyncio.shield(run("COMMIT", (), "rowcount"))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqliteTx]:
        conn = await self._readers.get()
        try:
            run = self._runner(conn)
            await run("BEGIN", (), "rowcount")
            try:
                yield SqliteTx(run)
            finally:
                await asyncio.shield(run("COMMIT", (), "rowcount"))
        finally:
            self._readers.put_nowait(conn)

    async def ping(self) -> None:
        async with self.read() as tx:
            await tx.fetchone("SELECT 1")

    async def close(self) -> None:
        conns, self._all, self._writer = self._all, [], None
        for conn in conns:
            await conn.close()


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

    def write(self) -> AsyncIterator[SqliteTx]:  # type: ignore[override]
        return self._tx("BEGIN IMMEDIATE")  # type: ignore[return-value]

    def read(self) -> AsyncIterator[SqliteTx]:  # type: ignore[override]
        return self._tx("BEGIN")  # type: ignore[return-value]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._conn.close()
