"""What a client stores leaves no plaintext or name anywhere the relay keeps or says anything."""

from __future__ import annotations

import io
import logging
import os

import asyncpg
import boto3

from relay import logs
from relay.db.postgres import split_url
from storage.keys import SealingKey, ShareKeys
from storage.sealing import seal_chunk

from .conftest import RelayUnderTest
from .helpers import create_share, login, new_device, publish

PLAINTEXT = b"the launch code is 0000, do not tell anyone. " * 64
NAME = "Quarterly-Secret-Plans-2026.xlsx"


async def test_no_plaintext_or_name_at_rest(relay: RelayUnderTest) -> None:
    captured = io.StringIO()
    logs.configure("DEBUG", captured)
    try:
        api = relay.api
        owner = new_device()
        await login(api, owner)
        share = await create_share(api, owner)
        keys = ShareKeys(share.share_id, os.urandom(32), os.urandom(32))
        sealed = seal_chunk(keys, SealingKey(0, os.urandom(32)), PLAINTEXT).block
        update = f'{{"op": "create", "name": "{NAME}"}}'.encode()
        env = owner.next_envelope(
            share.share_id, share.key, blocks=(sealed.block_id,), update=update
        )
        assert (await publish(api, share, owner, env)).status == 200
        put = await api.call(
            "PUT",
            f"{share.path}/blocks/{sealed.block_id.hex()}",
            raw=sealed.data,
            token=owner.token,
        )
        assert put.status == 201
        metrics = (await api.call("GET", "/metrics")).body
    finally:
        logging.getLogger("relay").handlers.clear()
        logging.getLogger("relay").propagate = True
        logging.getLogger("aiohttp.access").disabled = False

    haystacks: list[bytes] = [captured.getvalue().encode(), metrics]
    settings = relay.settings
    if settings.database_url.startswith("postgresql"):
        dsn, schema = split_url(settings.database_url)
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema or "public"})
        try:
            tables = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
            )
            for (table,) in tables:
                for row in await conn.fetch(f'SELECT * FROM "{table}"'):
                    haystacks.extend(
                        v if isinstance(v, bytes) else str(v).encode() for v in row.values()
                    )
        finally:
            await conn.close()
        s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1")
        bucket = settings.blocks_url.removeprefix("s3://").split("/")[0]
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            haystacks.append(obj["Key"].encode())
            got = s3.get_object(Bucket=bucket, Key=obj["Key"])
            haystacks.append(got["Body"].read())
            haystacks.append(repr(got.get("Metadata")).encode())
    for path in settings.data_dir.rglob("*"):
        if path.is_file():
            haystacks.append(path.read_bytes())
            haystacks.append(str(path).encode())
    needles = [PLAINTEXT[:40], NAME.encode(), NAME.encode("utf-16-le")]
    assert len(haystacks) > 3
    for hay in haystacks:
        for needle in needles:
            assert needle not in hay
