"""PostgreSQL through asyncpg: the scale-out metadata store shared by every relay replica.

Placeholders are rewritten from ``?`` to ``$n`` once per statement text and cached. Transactions
run at READ COMMITTED; the share head row is locked with ``SELECT … FOR UPDATE``, so appends to
one share commit one after another in sequence order while other shares proceed in parallel.
Durability is PostgreSQL's: ``synchronous_commit`` on (its default) means an acknowledged append
is in the WAL on disk.

A URL may name a schema (``postgresql://…/db?schema=name``): the relay then creates it if needed
and works only inside it (tests give each case its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.transaction import Transaction

from relay.db.base import DatabaseError, Dialect, Row, UniqueViolation
from relay.db.migrations import migrate

_MIGRATION_LOCK_KEY = 0x64726966  # "drif": one advisory lock id for schema migrations
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@lru_cache(maxsize=512)
def to_dollar(sql: str) -> str:
    counter = 0

    def repl(_: re.Match[str]) -> str:
        nonlocal counter
        counter += 1
        return f"${counter}"

    return re.sub(r"\?", repl, sql)


def split_url(url: str) -> tuple[str, str | None]:
    """The asyncpg DSN without our own ``schema`` parameter, and that schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    dsn = urlunsplit(parts._replace(scheme="postgresql", query=rest))
    if schema is not None and not _SCHEMA_NAME.match(schema):
        raise DatabaseError(f"invalid schema name {schema!r} (lower-case letters, digits, _)")
    return dsn, schema


def _translate(exc: Exception) -> DatabaseError:
    if isinstance(exc, asyncpg.UniqueViolationError):
        return UniqueViolation(str(exc))
    return DatabaseError(f"{type(exc).__name__}: {exc}")


class PgTx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: object) -> int:
        try:
            status = await self._conn.execute(to_dollar(sql), *args)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _translate(exc) from exc
        # "INSERT 0 1", "UPDATE 3", "DELETE 0", "CREATE TABLE"
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def executemany(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        try:
            await self._conn.executemany(to_dollar(sql), rows)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _translate(exc) from exc

    async def fetchone(self, sql: str, *args: object) -> Row | None:
        try:
            row = await self._conn.fetchrow(to_dollar(sql), *args)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _translate(exc) from exc
        return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, *args: object) -> list[Row]:
        try:
            rows = await self._conn.fetch(to_dollar(sql), *args)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _translate(exc) from exc
        return [tuple(r) for r in rows]

    async def select_for_update(self, sql: str, *args: object) -> Row | None:
        return await self.fetchone(sql + " FOR UPDATE", *args)


GROUP_MAX = 256


class _Group:
    """The open group transaction of one share's writers in this process."""

    __slots__ = ("conn", "done", "lock", "size", "tx", "waiting")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.waiting = 0
        self.size = 0
        self.conn: asyncpg.Connection | None = None
        self.tx: Transaction | None = None
        self.done: asyncio.Future[None] | None = None


class PostgresDatabase:
    dialect: Dialect = "postgres"

    def __init__(self, url: str, min_size: int = 2, max_size: int = 20) -> None:
        self.dsn, self.schema = split_url(url)
        self._min, self._max = min_size, max_size
        self._pool: asyncpg.Pool | None = None
        self._groups: dict[str, _Group] = {}
        self._orphan_commits: set[asyncio.Task[None]] = set()

    async def open(self) -> PostgresDatabase:
        settings = {"search_path": self.schema} if self.schema else {}
        try:
            if self.schema:
                conn = await asyncpg.connect(self.dsn)
                try:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                except asyncpg.UniqueViolationError:
                    pass  # another replica created it at the same moment
                finally:
                    await conn.close()
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=self._min, max_size=self._max, server_settings=settings
            )
            async with self.write() as tx:
                await tx.execute("SELECT pg_advisory_xact_lock(?)", _MIGRATION_LOCK_KEY)
                await migrate(tx, self.dialect)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self.close()
            raise DatabaseError(f"cannot open PostgreSQL database: {exc}") from exc
        return self

    @asynccontextmanager
    async def _tx(self, readonly: bool) -> AsyncIterator[PgTx]:
        if self._pool is None:
            raise DatabaseError("database is closed")
        try:
            conn = await self._pool.acquire()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _translate(exc) from exc
        try:
            isolation = "repeatable_read" if readonly else "read_committed"
            tx = conn.transaction(isolation=isolation, readonly=readonly)
            await tx.start()
            try:
                yield PgTx(conn)
            except BaseException:
                await asyncio.shield(tx.rollback())
                raise
            try:
                await asyncio.shield(tx.commit())
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise _translate(exc) from exc
        finally:
            await self._pool.release(conn)

    def write(self, group: str | None = None) -> AsyncIterator[PgTx]:  # type: ignore[override]
        if group is None:
            return self._tx(readonly=False)  # type: ignore[return-value]
        return self._grouped(group)  # type: ignore[return-value]

    @asynccontextmanager
    async def _grouped(self, key: str) -> AsyncIterator[PgTx]:
        """Group commit for writers of one share in this process (see ``Database.write``).

        Appends to one share serialize on its row lock anyway; sharing the transaction lets
        them share the commit's WAL flush instead of each waiting for its own.
        """
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
        group.waiting += 1
        try:
            await group.lock.acquire()
        except BaseException:
            group.waiting -= 1
            self._commit_if_orphaned(key, group)
            raise
        group.waiting -= 1
        try:
            if group.conn is None:
                await self._open_group(group)
            conn, done = group.conn, group.done
            if conn is None or done is None:  # pragma: no cover - _open_group sets both
                raise DatabaseError("group transaction did not open")
            await conn.execute("SAVEPOINT writer")
            try:
                yield PgTx(conn)
            except BaseException:
                await asyncio.shield(conn.execute("ROLLBACK TO SAVEPOINT writer"))
                await asyncio.shield(conn.execute("RELEASE SAVEPOINT writer"))
                if group.waiting == 0:
                    await self._commit_group(group)
                raise
            await conn.execute("RELEASE SAVEPOINT writer")
            group.size += 1
            if group.waiting == 0 or group.size >= GROUP_MAX:
                await self._commit_group(group)
        finally:
            group.lock.release()
            if group.waiting == 0 and group.conn is None:
                self._groups.pop(key, None)
        await asyncio.shield(done)

    def _commit_if_orphaned(self, key: str, group: _Group) -> None:
        """A writer cancelled while waiting may have been the one an open group counted on to
        commit it: commit the group from a task of its own then."""
        if group.conn is not None and group.waiting == 0 and not group.lock.locked():
            task = asyncio.get_running_loop().create_task(self._commit_orphan(key, group))
            self._orphan_commits.add(task)
            task.add_done_callback(self._orphan_commits.discard)

    async def _commit_orphan(self, key: str, group: _Group) -> None:
        async with group.lock:
            if group.conn is not None and group.waiting == 0:
                with contextlib.suppress(DatabaseError):  # its writers get the error instead
                    await self._commit_group(group)
            if group.waiting == 0 and group.conn is None:
                self._groups.pop(key, None)

    async def _open_group(self, group: _Group) -> None:
        if self._pool is None:
            raise DatabaseError("database is closed")
        try:
            group.conn = await self._pool.acquire()
            group.tx = group.conn.transaction()
            await group.tx.start()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if group.conn is not None:
                await self._pool.release(group.conn)
                group.conn = None
            raise _translate(exc) from exc
        group.done = asyncio.get_running_loop().create_future()
        group.size = 0

    async def _commit_group(self, group: _Group) -> None:
        conn, tx, done, pool = group.conn, group.tx, group.done, self._pool
        group.conn = group.tx = group.done = None
        if conn is None or tx is None or done is None or pool is None:  # pragma: no cover
            raise DatabaseError("no group transaction to commit")
        try:
            await asyncio.shield(tx.commit())
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                await tx.rollback()
            done.set_exception(_translate(exc))
            done.exception()  # retrieved; each writer re-raises it from the future
            raise _translate(exc) from exc
        finally:
            await pool.release(conn)
        done.set_result(None)

    def read(self) -> AsyncIterator[PgTx]:  # type: ignore[override]
        return self._tx(readonly=True)  # type: ignore[return-value]

    async def ping(self) -> None:
        async with self.read() as tx:
            await tx.fetchone("SELECT 1")

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
