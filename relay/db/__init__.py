"""The relay's metadata store: a narrow Database seam and its SQLite, in-memory and PG backends."""

from __future__ import annotations

from pathlib import Path

from relay.db.base import Database, DatabaseError, Row, Tx, UniqueViolation


async def open_database(url: str, *, sqlite_synchronous: str = "FULL") -> Database:
    """Open (and migrate) the database a URL names: sqlite:///path, memory:, postgresql://…"""
    if url.startswith("sqlite:///"):
        from relay.db.sqlite import SqliteDatabase

        return await SqliteDatabase(Path(url.removeprefix("sqlite:///")), sqlite_synchronous).open()
    if url.startswith("memory:"):
        from relay.db.sqlite import MemoryDatabase

        return await MemoryDatabase().open()
    if url.startswith(("postgresql://", "postgres://")):
        from relay.db.postgres import PostgresDatabase

        return await PostgresDatabase(url).open()
    raise DatabaseError(f"unknown database URL {url!r}")


__all__ = ["Database", "DatabaseError", "Row", "Tx", "UniqueViolation", "open_database"]
