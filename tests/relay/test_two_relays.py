"""Two relay processes on one PostgreSQL, S3 and Redis: ten writers through both."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import aiohttp
import boto3
import pytest

from protocol.chain import Role
from protocol.codec import pack
from tests.conftest import free_port

from .conftest import REDIS_URL, RelayProcess, write_config
from .helpers import Api, Device, Inbox, add_member, create_share, login, new_device, publish

WRITERS = 10
PER_WRITER = 12


@pytest.fixture
def shared_backends(
    tmp_path: Path, pg_url: str, moto_endpoint: str, relay_processes: list[RelayProcess]
) -> list[RelayProcess]:
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    key = tmp_path / "jwt.key"
    key.write_text("s" * 64)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    prefix = f"drifttest:{uuid.uuid4().hex[:8]}:"
    for name in ("a", "b"):
        port = free_port()
        config = write_config(
            tmp_path / f"{name}.toml",
            {
                "host": "127.0.0.1",
                "origin": "http://relay.test",
                "data_dir": str(tmp_path / name),
                "database_url": pg_url,
                "blocks_url": f"s3://{bucket}/r",
                "s3_endpoint_url": moto_endpoint,
                "notify_url": REDIS_URL,
                "redis_prefix": prefix,
                "heartbeat_s": 2.0,
                "log_level": "WARNING",
            },
            key,
        )
        relay_processes.append(RelayProcess(config, port, env))
    for proc in relay_processes:
        proc.start()
    return relay_processes


async def test_ten_writers_through_two_relays(shared_backends: list[RelayProcess]) -> None:
    a, b = shared_backends
    await asyncio.gather(a.wait_ready(), b.wait_ready())
    async with aiohttp.ClientSession() as session:
        apis = [Api(session, a.base), Api(session, b.base)]
        owner = new_device()
        assert (await login(apis[0], owner)).status == 200
        share = await create_share(apis[0], owner)
        writers = [owner]
        for i in range(WRITERS - 1):
            device = new_device()
            assert (await login(apis[i % 2], device)).status == 200
            await add_member(apis[0], share, device, Role.EDITOR)
            writers.append(device)

        # A subscriber on relay B, before any append.
        headers = {"Authorization": f"Bearer {owner.token}"}
        inbox = Inbox(await session.ws_connect(b.base + "/v1/ws", headers=headers))
        await inbox.ws.send_bytes(pack({"type": "subscribe", "cursors": {share.hex: 0}}))
        hello = await inbox.next()
        assert hello is not None
        assert hello["heads"] == {share.hex: 0}

        # Through relay A only, one append: B's subscriber hears of it.
        env = owner.next_envelope(share.share_id, share.key, height=share.chain.height)
        assert (await publish(apis[0], share, owner, env)).status == 200
        note = await inbox.next()
        while note is not None and note["type"] == "heartbeat":  # a slow machine may beat first
            note = await inbox.next()
        assert note is not None
        assert (note["type"], note["share"], note["seq"]) == ("append", share.hex, 1)
        # Relay B read the entry A appended from the shared database and pushed it.
        assert [e[:2] for e in note["entries"]] == [[1, env]]

        stop = asyncio.Event()
        pages: list[list[int]] = []

        async def reader() -> None:
            cursor, turn = 0, 0
            while not stop.is_set() or cursor < 1 + WRITERS * PER_WRITER:
                api = apis[turn % 2]
                turn += 1
                got = await api.call(
                    "GET", f"{share.path}/envelopes?since={cursor}&limit=7", token=owner.token
                )
                seqs = [seq for seq, *_ in got.body["entries"]]
                if seqs:
                    pages.append([cursor, *seqs])
                    cursor = seqs[-1]
                else:
                    await asyncio.sleep(0.01)

        async def writer(index: int, device: Device) -> None:
            for n in range(PER_WRITER):
                api = apis[(index + n) % 2]  # alternate relays envelope by envelope
                env = device.next_envelope(share.share_id, share.key, height=share.chain.height)
                answer = await publish(api, share, device, env)
                assert answer.status == 200, answer.body

        read_task = asyncio.create_task(reader())
        await asyncio.wait_for(asyncio.gather(*(writer(i, d) for i, d in enumerate(writers))), 90)
        stop.set()
        await asyncio.wait_for(read_task, 30)

        total = 1 + WRITERS * PER_WRITER
        for page in pages:
            cursor, seqs = page[0], page[1:]
            assert seqs == list(range(cursor + 1, cursor + 1 + len(seqs))), page
        log = await apis[1].call(
            "GET", f"{share.path}/envelopes?since=0&limit=1000", token=owner.token
        )
        assert [s for s, *_ in log.body["entries"]] == list(range(1, total + 1))
        vector = await apis[0].call("GET", f"{share.path}/vector", token=owner.token)
        assert vector.body["vector"] == {
            w.hex: PER_WRITER + (1 if w is owner else 0) for w in writers
        }

        # Every writer's fork, through either relay, is refused and changes nothing.
        for i, device in enumerate(writers):
            device.counter, device.prev = device.counter - 1, _tip_before(log.body, device)
            fork = device.next_envelope(
                share.share_id, share.key, update=b"fork", height=share.chain.height
            )
            answer = await publish(apis[i % 2], share, device, fork)
            assert (answer.status, answer.code) == (409, "fork")
        after = await apis[0].call(
            "GET", f"{share.path}/envelopes?since=0&limit=1000", token=owner.token
        )
        assert after.body["last_seq"] == total

        # The subscriber on B hears of the latest seq (appends coalesce; heartbeats carry
        # heads), then catches up from its cursor through B: exactly the rows after it.
        latest = 1
        while latest < total:
            message = await inbox.next()
            assert message is not None, "the subscriber was disconnected"
            latest = max(latest, message.get("seq", 0), *message.get("heads", {}).values())
        await inbox.close()
        caught_up = await apis[1].call(
            "GET", f"{share.path}/envelopes?since=1&limit=1000", token=owner.token
        )
        assert [s for s, *_ in caught_up.body["entries"]] == list(range(2, total + 1))


def _tip_before(log: dict, device: Device) -> bytes:
    from protocol.envelope import Envelope

    envelopes = [Envelope.decode(body) for _, body, _ in log["entries"]]
    mine = [e for e in envelopes if e.header.device == device.device_id]
    return mine[-2].envelope_hash if len(mine) >= 2 else bytes(32)
