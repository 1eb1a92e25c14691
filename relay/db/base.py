"""The relay's Database seam: transactions of a few SQL statements, nothing more.

SQL is written once with ``?`` placeholders in the common subset of SQLite and PostgreSQL; each
implementation adapts placeholders and the little that differs. Rows come back as tuples.

``write()`` is a transaction that may change rows. ``Tx.select_for_update`` is how a transaction
serializes against others on one row (the share head): ``SELECT … FOR UPDATE`` on PostgreSQL; on
SQLite every write transaction starts with ``BEGIN IMMEDIATE`` and so already holds the one write
lock.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Literal, Protocol

Row = tuple[object, ...]
Dialect = Literal["sqlite", "postgres"]


class DatabaseError(Exception):
    """The database failed in a way the request cannot fix (down, full, corrupt)."""


class UniqueViolation(DatabaseError):
    """An insert hit a unique constraint; the transaction is rolled back."""


class Tx(Protocol):
    async def execute(self, sql: str, *args: object) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: list[tuple[object, ...]]) -> None: ...

    async def fetchone(self, sql: str, *args: object) -> Row | None: ...

    async def fetchall(self, sql: str, *args: object) -> list[Row]: ...

    async def select_for_update(self, sql: str, *args: object) -> Row | None:
        """``fetchone`` that also locks the selected row until the transaction ends."""
        ...


class Database(Protocol):
    dialect: Dialect

    def read(self) -> AbstractAsyncContextManager[Tx]:
        """A read-only transaction with one consistent snapshot."""
        ...

    def write(self, group: str | None = None) -> AbstractAsyncContextManager[Tx]:
        """A read-write transaction: committed when the block exits, rolled back on error.

        Writers naming the same ``group`` (a share id) may share one transaction, each inside
        its own savepoint, and one commit (group commit): the block exits only once its changes
        are durable, and an error rolls back only that writer's changes. A backend is free to
        group more widely (SQLite groups every writer) or not at all.
        """
        ...

    async def ping(self) -> None:
        """Raise :class:`DatabaseError` unless the database answers (for /healthz)."""
        ...

    async def close(self) -> None: ...
