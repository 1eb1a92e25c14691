"""SIGKILL during appends and block uploads: nothing acknowledged is lost, nothing half-written
becomes visible."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from pathlib import Path

import aiohttp

from protocol.envelope import Envelope
from tests.conftest import free_port

from .conftest import RelayProcess, write_config
from .helpers import Api, block, create_share, login, new_device, publish


async def test_sigkill_loses_nothing_acknowledged(
    tmp_path: Path, relay_processes: list[RelayProcess]
) -> None:
    data_dir = tmp_path / "relay"
    config = write_config(
        tmp_path / "relay.toml",
        {"host": "127.0.0.1", "data_dir": str(data_dir), "log_level": "WARNING"},
    )
    relay = RelayProcess(config, free_port(), dict(os.environ))
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
        await asyncio.sleep(1.0)
        relay.kill()
        for task in tasks:
            with contextlib.suppress(aiohttp.ClientError, asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        assert acked_envelopes
        assert acked_blocks

        relay.start()
        await relay.wait_ready()
        log = await api.call("GET", f"{share.path}/envelopes?since=0&limit=1000", token=owner.token)
        stored = dict(map(tuple, log.body["entries"]))
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
    # No block file under its id holds anything but the bytes that hash to that id.
    for path in (data_dir / "blocks" / "blocks").rglob("*"):
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
