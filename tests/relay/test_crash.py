"""SIGKILL during appends and block uploads: nothing acknowledged is lost, nothing half-written
becomes visible. Once on SQLite + a block directory, once on PostgreSQL + S3 (moto_server)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest

from protocol.envelope import Envelope
from tests.conftest import free_port

from .conftest import RelayProcess, write_config
from .helpers import Api, block, create_share, login, new_device, publish

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _stored_blocks_sqlite(data_dir: Path) -> Iterator[tuple[str, bytes]]:
    for path in (data_dir / "blocks" / "blocks").rglob("*"):
        if path.is_file():
            yield path.name, path.read_bytes()


def _stored_blocks_s3(endpoint: str, bucket: str, prefix: str) -> Iterator[tuple[str, bytes]]:
    client = _s3_client(endpoint)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            yield item["Key"].rsplit("/", 1)[-1], body


@pytest.mark.parametrize("backend", ["sqlite+dir", "pg+s3"])
async def test_sigkill_loses_nothing_acknowledged(
    backend: str,
    tmp_path: Path,
    relay_processes: list[RelayProcess],
    request: pytest.FixtureRequest,
) -> None:
    data_dir = tmp_path / "relay"
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "data_dir": str(data_dir),
        "log_level": "WARNING",
    }
    if backend == "pg+s3":
        endpoint = str(request.getfixturevalue("moto_endpoint"))
        bucket = f"b-{uuid.uuid4().hex[:12]}"
        _s3_client(endpoint).create_bucket(Bucket=bucket)
        values |= {
            "database_url": str(request.getfixturevalue("pg_url")),
            "blocks_url": f"s3://{bucket}/crash/",
            "s3_endpoint_url": endpoint,
        }
    key_file = None
    if backend == "pg+s3":
        # A relay on a shared database must be given its token key (the restart keeps it).
        key_file = tmp_path / "jwt.key"
        key_file.write_text("c" * 64)
    config = write_config(tmp_path / "relay.toml", values, key_file)
    relay = RelayProcess(config, free_port(), {**os.environ, **S3_ENV})
    relay_processes.append(relay)
    relay.start()
    await relay.wait_ready()
    acked_envelopes: dict[int, bytes] = {}
    acked_blocks: dict[bytes, bytes] = {}
    async with aiohttp.ClientSession() as session:
        api = Api(session, relay.base)
        owner = new_device()
        await login(api, owner)
        share = await create_share(api, owner)

        async def appender() -> None:
            while True:
                env = owner.next_envelope(share.share_id, share.key, advance=False)
                answer = await publish(api, share, owner, env)
                assert answer.status == 200
                acked_envelopes[answer.body["seqs"][0]] = env
                # The device's counter advances only once the relay acknowledged.
                owner.counter += 1
                owner.prev = Envelope.decode(env).envelope_hash

        async def uploader() -> None:
            while True:
                bid, data = block(os.urandom(1 << 20))
                answer = await api.call(
                    "PUT", f"{share.path}/blocks/{bid.hex()}", raw=data, token=owner.token
                )
                assert answer.status == 201
                acked_blocks[bid] = data

        tasks = [asyncio.create_task(appender()), asyncio.create_task(uploader())]
        # Kill once both kinds of write have been acknowledged and more are in flight.
        for _ in range(300):
            if len(acked_envelopes) >= 3 and len(acked_blocks) >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        relay.kill()
        for task in tasks:
            with contextlib.suppress(aiohttp.ClientError, asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        assert acked_envelopes
        assert acked_blocks

        relay.start()
        await relay.wait_ready()
        log = await api.call("GET", f"{share.path}/envelopes?since=0&limit=1000", token=owner.token)
        stored = {entry[0]: entry[1] for entry in log.body["entries"]}
        for seq, env in acked_envelopes.items():
            assert stored.get(seq) == env
        assert sorted(stored) == list(range(1, len(stored) + 1))
        have = await api.call(
            "POST", f"{share.path}/blocks/have", {"ids": list(acked_blocks)}, token=owner.token
        )
        assert set(have.body["have"]) == set(acked_blocks)
        for bid, data in list(acked_blocks.items())[-3:]:
            got = await api.call("GET", f"{share.path}/blocks/{bid.hex()}", token=owner.token)
            assert got.body == data
        # The device picks up where the relay left it: its next envelope is taken.
        env = owner.next_envelope(share.share_id, share.key)
        if len(stored) > len(acked_envelopes):
            # The relay committed an append whose answer the kill swallowed: resync from the log.
            last = Envelope.decode(stored[max(stored)])
            owner.counter, owner.prev = last.header.counter, last.envelope_hash
            env = owner.next_envelope(share.share_id, share.key)
        assert (await publish(api, share, owner, env)).status == 200
    # No block stored under its id holds anything but the bytes that hash to that id.
    if backend == "sqlite+dir":
        objects = list(_stored_blocks_sqlite(data_dir))
    else:
        objects = list(_stored_blocks_s3(endpoint, bucket, "crash/"))
    assert len(objects) >= len(acked_blocks)
    for name, body in objects:
        assert hashlib.sha256(body).hexdigest() == name
