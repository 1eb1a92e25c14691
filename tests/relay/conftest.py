"""Fixtures for the relay's tests: a fresh PostgreSQL schema and Redis key prefix per test.

PostgreSQL (127.0.0.1:5432, trust auth, database ``test``) and Redis (127.0.0.1:6379) must be
running: CI starts them. If they are down the tests fail loudly, they never skip.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import boto3
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from relay.db import Database, open_database
from relay.http import create_app
from relay.settings import JwtKey, Settings
from tests.conftest import free_port

from .helpers import Api

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

    Sync on purpose, so parametrized and async fixtures alike can request it.
    """
    schema = f"t_{uuid.uuid4().hex[:16]}"
    base = _in_thread(_pg_exec(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}?schema={schema}"
    finally:
        _in_thread(_pg_exec(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def _in_thread(coro: Coroutine[Any, Any, str]) -> str:
    """Run admin work on a loop of its own, whether or not a test's loop is running here."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=30)


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


@dataclass
class RelayUnderTest:
    api: Api
    settings: Settings
    app: web.Application


def backend_settings(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    port = free_port()
    base = Settings(host="127.0.0.1", port=port, data_dir=tmp_path / "relay", heartbeat_s=1.0)
    if kind == "sqlite+dir":
        return base
    moto = request.getfixturevalue("moto_endpoint")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    return replace(
        base,
        database_url=request.getfixturevalue("pg_url"),
        blocks_url=f"s3://{bucket}/relay",
        s3_endpoint_url=moto,
        notify_url=REDIS_URL,
        redis_prefix=request.getfixturevalue("redis_prefix_sync"),
        jwt_keys=(JwtKey("test", b"k" * 32),),
    )


@pytest.fixture
def redis_prefix_sync() -> str:
    """A channel prefix of this test's own (the relay keeps no keys in Redis, only channels)."""
    return f"drifttest:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@asynccontextmanager
async def running_relay(settings: Settings) -> AsyncIterator[RelayUnderTest]:
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings.port)
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield RelayUnderTest(Api(session, f"http://127.0.0.1:{settings.port}"), settings, app)
    finally:
        await runner.cleanup()


@pytest.fixture(params=["sqlite+dir", "pg+s3+redis"])
async def relay(
    request: pytest.FixtureRequest, tmp_path: Path, aws_env: None
) -> AsyncIterator[RelayUnderTest]:
    settings = backend_settings(request.param, tmp_path, request)
    async with running_relay(settings) as under_test:
        yield under_test


class RelayProcess:
    """A relay in a process of its own (``python -m relay serve``), for multi-process and crash
    tests; stopped (killed if need be) by the fixture that made it."""

    def __init__(self, config: Path, port: int, env: dict[str, str]) -> None:
        self.config, self.port, self.env = config, port, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relay",
                "serve",
                "--config",
                str(self.config),
                "--port",
                str(self.port),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    async def wait_ready(self, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    pytest.fail(f"relay process exited with {self.proc.returncode}: {err}")
                try:
                    async with session.get(f"{self.base}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("relay process did not become healthy")
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def relay_processes() -> Iterator[list[RelayProcess]]:
    made: list[RelayProcess] = []
    try:
        yield made
    finally:
        for proc in made:
            proc.stop()


def write_config(path: Path, values: dict[str, object], key_file: Path | None = None) -> Path:
    lines = []
    for key, value in values.items():
        lines.append(f"{key} = {json.dumps(value)}")
    if key_file is not None:
        lines += [
            "",
            "[[jwt_keys]]",
            'kid = "shared"',
            f"secret_file = {json.dumps(str(key_file))}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path
