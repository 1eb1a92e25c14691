"""Fixtures for the relay's tests: a fresh PostgreSQL schema and Redis key prefix per test.

PostgreSQL (127.0.0.1:5432, trust auth, database ``test``) and Redis (127.0.0.1:6379) must be
running: CI starts them. If they are down the tests fail loudly, they never skip.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from relay.db import Database, open_database

PG_ADMIN_URLS = [
    os.environ.get("DRIFT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
    "postgresql://root@127.0.0.1:5432/test",
]
REDIS_URL = os.environ.get("DRIFT_TEST_REDIS", "redis://127.0.0.1:6379/0")


async def _pg_exec(sql: str) -> str:
    errors = []
    for url in PG_ADMIN_URLS:
        try:
            conn = await asyncpg.connect(url, timeout=5)
        except (OSError, asyncpg.PostgresError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
        return url
    pytest.fail("PostgreSQL is not reachable (CI starts it):\n" + "\n".join(errors))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL naming a schema of this test's own, dropped afterwards.

    Sync on purpose (run outside the test's loop), so parametrized fixtures can request it.
    """
    schema = f"t_{uuid.uuid4().hex[:16]}"
    base = asyncio.run(_pg_exec(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}?schema={schema}"
    finally:
        asyncio.run(_pg_exec(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key and channel prefix of this test's own; its keys are deleted afterwards."""
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as exc:
        await client.aclose()
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (CI starts it): {exc}")
    prefix = f"drifttest:{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'relay.db'}"
    if request.param == "memory":
        return "memory:"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await open_database(db_url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def unique() -> Callable[[str], str]:
    return lambda label: f"{label}-{uuid.uuid4().hex[:8]}"
