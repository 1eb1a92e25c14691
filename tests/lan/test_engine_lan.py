"""Two real daemons (``DeviceNode.run``) with LAN peers on loopback and a real relay.

The relay goes away: the devices find each other by mDNS on loopback and sync over the LAN alone.
The relay comes back on the same data: every envelope reaches it once, with its blocks, and its
version vector is the union of the devices'. With both paths up, a file's content comes over the
LAN (bytes counted per path).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path
from typing import Any

from peer.cli import Env, main
from peer.device.config import DeviceConfig
from peer.engine.node import DeviceNode
from peer.errors import ExitCode
from peer.remote.backoff import Backoff
from protocol.envelope import Envelope
from tests.conftest import free_port
from tests.peer_sync.harness import Dev, make_device, running_relay, share_between, wait_for


def lan_on(dev: Dev) -> None:
    """LAN peers on, on loopback only, and a relay client that gives up fast."""
    config = DeviceConfig.load(dev.home.config)
    config.lan_enabled = True
    config.lan_addresses = ["127.0.0.1"]
    config.lan_port = 0
    config.watch_delay_ms = 20
    config.save(dev.home.config)
    dev.node = DeviceNode(dev.home, watch=True)
    dev.node.link.backoff = Backoff(base_s=0.05, cap_s=0.2, attempts=2)  # type: ignore[attr-defined]


async def start(devs: list[Dev]) -> tuple[asyncio.Event, list[asyncio.Task[None]]]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(d.node.run(stop)) for d in devs]
    await wait_for(lambda: all(d.node.lan is not None for d in devs), 10)
    return stop, tasks


async def stop_all(devs: list[Dev], stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    for d in devs:
        await d.node.close()


async def cli_status(dev: Dev) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["--home", str(dev.home.root), "--json", "status"]
    await wait_for(lambda: lan_status_file(dev).exists(), 5)
    await asyncio.sleep(1.2)  # the daemon rewrites it every second
    code = await asyncio.to_thread(main, argv, Env(vars={}, out=out, err=err))
    assert code == ExitCode.OK, err.getvalue()
    return json.loads(out.getvalue())  # type: ignore[no-any-return]


def lan_status_file(dev: Dev) -> Path:
    return dev.home.root / "lan-status.json"


def lan_received(dev: Dev) -> int:
    assert dev.node.lan is not None
    return sum(p.received_bytes for p in dev.node.lan.peers.status())


def referenced_blocks(dev: Dev, share: str) -> list[bytes]:
    store = dev.node.share(share).replica.envelopes
    bodies = store.envelopes_after({})
    return sorted({b for body in bodies for b in Envelope.decode(body).header.blocks})


async def relay_vector(dev: Dev, share: str) -> dict[str, int]:
    return await dev.node.link.server_vector(share)


def device_vector(dev: Dev, share: str) -> dict[str, int]:
    return {d.hex(): c for d, c in dev.node.share(share).replica.tips_vector().items()}


async def test_two_daemons_sync_over_lan_while_the_relay_is_away(tmp_path: Path) -> None:
    port = free_port()
    async with running_relay(tmp_path / "relay", port) as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        await a.sync()
        await b.sync()
        for dev in (a, b):
            await dev.node.close()
            lan_on(dev)
    # The relay is gone; both daemons start with only each other.
    stop_a, (task_a,) = await start([a])
    stop, tasks = await start([b])
    try:
        big = os.urandom(3 << 20)
        (a.folder / "offline.bin").write_bytes(big)
        (b.folder / "from-b.txt").write_bytes(b"b wrote this offline")
        await wait_for(lambda: b.files().get("offline.bin") == big, 30)
        await wait_for(lambda: a.files().get("from-b.txt") == b"b wrote this offline", 30)
        assert lan_received(b) >= len(big)
        # `drift status --json` (another process, as a user runs it) shows the peer and bytes.
        status = await cli_status(b)
        assert status["lan"]["running"] is True
        (peer,) = status["lan"]["peers"]
        assert peer["name"] == "a"
        assert peer["received_bytes"] >= len(big)
        # a restarts while the relay is still away: what it deferred is no longer in memory.
        await stop_all([a], stop_a, [task_a])
        lan_on(a)
        stop_a = asyncio.Event()
        task_a = asyncio.create_task(a.node.run(stop_a))
        await wait_for(lambda: a.node.lan is not None, 10)
        # b goes away too: a alone must bring the relay its own blocks and b's envelopes.
        vector_b = device_vector(b, share)
        await stop_all([b], stop, tasks)
        tasks = []
        # The relay returns on the same data: it receives everything, once, with the blocks.
        async with running_relay(tmp_path / "relay", port):
            union = device_vector(a, share) | vector_b

            async def relay_has_all() -> bool:
                return await relay_vector(a, share) == union

            deadline = asyncio.get_running_loop().time() + 30
            while not await relay_has_all():
                assert asyncio.get_running_loop().time() < deadline, "the relay never caught up"
                await asyncio.sleep(0.2)
            assert device_vector(a, share) == union
            # Every block an envelope references arrived too.
            referenced = referenced_blocks(a, share)  # a's file and b's
            assert referenced
            assert await a.node.link.have_blocks(share, referenced) == set(referenced)
    finally:
        await stop_all([a], stop_a, [task_a])
        if tasks:
            await stop_all([b], stop, tasks)


async def test_after_edits_on_both_sides_of_a_lan_only_period_the_relay_gets_everything(
    tmp_path: Path,
) -> None:
    # Each device's envelopes have seen the other's (neither device's alone can go first), and
    # the first version of a's file is gone from its disk before the relay returns.
    port = free_port()
    async with running_relay(tmp_path / "relay", port) as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        await a.sync()
        await b.sync()
        for dev in (a, b):
            await dev.node.close()
            lan_on(dev)
    stop, tasks = await start([a, b])
    try:
        (a.folder / "notes.md").write_bytes(b"notes v1\n" * 40)
        await wait_for(lambda: b.files().get("notes.md") == b"notes v1\n" * 40, 30)
        (b.folder / "todo.txt").write_bytes(b"- ship it\n")
        await wait_for(lambda: a.files().get("todo.txt") == b"- ship it\n", 30)
        (a.folder / "notes.md").write_bytes(b"notes v2\n" * 50)
        await wait_for(lambda: b.files().get("notes.md") == b"notes v2\n" * 50, 30)
        async with running_relay(tmp_path / "relay", port):
            union = device_vector(a, share) | device_vector(b, share)

            async def relay_has_all() -> bool:
                return await relay_vector(a, share) == union

            deadline = asyncio.get_running_loop().time() + 30
            while not await relay_has_all():
                assert asyncio.get_running_loop().time() < deadline, "the relay never caught up"
                await asyncio.sleep(0.2)
            referenced = referenced_blocks(a, share)  # notes v1 among them
            assert await a.node.link.have_blocks(share, referenced) == set(referenced)
    finally:
        await stop_all([a, b], stop, tasks)


async def test_a_version_taken_over_the_lan_survives_its_author_being_wiped(
    tmp_path: Path,
) -> None:
    # b writes two versions of a file while the relay is away; a takes both over the LAN, so its
    # disk holds only the second. b is then wiped (it never comes back): a alone must bring the
    # relay b's envelopes and every block they name, or the first version is lost to everyone.
    port = free_port()
    async with running_relay(tmp_path / "relay", port) as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        await a.sync()
        await b.sync()
        for dev in (a, b):
            await dev.node.close()
            lan_on(dev)
    stop_a, task_a = await start([a])
    stop_b, task_b = await start([b])
    try:
        (b.folder / "notes.md").write_bytes(b"notes v1\n" * 40)
        await wait_for(lambda: a.files().get("notes.md") == b"notes v1\n" * 40, 30)
        (b.folder / "notes.md").write_bytes(b"notes v2\n" * 50)
        await wait_for(lambda: a.files().get("notes.md") == b"notes v2\n" * 50, 30)
        vector_b = device_vector(b, share)
        await wait_for(lambda: device_vector(a, share) == vector_b, 30)
        await stop_all([b], stop_b, task_b)
        task_b = []
        async with running_relay(tmp_path / "relay", port):

            async def relay_has_all() -> bool:
                return await relay_vector(a, share) == vector_b

            deadline = asyncio.get_running_loop().time() + 30
            while not await relay_has_all():
                assert asyncio.get_running_loop().time() < deadline, "the relay never caught up"
                await asyncio.sleep(0.2)
            referenced = referenced_blocks(a, share)  # notes v1 among them
            assert await a.node.link.have_blocks(share, referenced) == set(referenced)
    finally:
        await stop_all([a], stop_a, task_a)
        if task_b:
            await stop_all([b], stop_b, task_b)


async def test_with_relay_and_lan_up_content_comes_over_the_lan(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        await share_between(a, b)
        await a.sync()
        await b.sync()
        for dev in (a, b):
            await dev.node.close()
            lan_on(dev)
        stop, tasks = await start([a, b])
        try:
            await wait_for(lambda: all(d.node.lan and d.node.lan.peers.links() for d in (a, b)))
            big = os.urandom(6 << 20)
            down_before = relay_bytes_down(b)
            (a.folder / "big.bin").write_bytes(big)
            await wait_for(lambda: b.files().get("big.bin") == big, 30)
            from_relay = relay_bytes_down(b) - down_before
            from_lan = lan_received(b)
            assert from_lan >= len(big), (from_lan, from_relay)
            assert from_relay < len(big) // 4, (from_lan, from_relay)
        finally:
            await stop_all([a, b], stop, tasks)


async def test_a_peer_serving_corrupt_chunks_is_dropped_and_the_data_comes_from_elsewhere(
    tmp_path: Path,
) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b, c = (make_device(tmp_path, n, url) for n in ("a", "b", "c"))
        share = await share_between(a, b, c)
        big = os.urandom(5 << 20)
        (a.folder / "big.bin").write_bytes(big)
        await a.sync()
        await c.sync()
        assert c.files()["big.bin"] == big
        for dev in (a, b, c):
            await dev.node.share(share).refresh_chain()  # everyone admits everyone from the start
        await b.node.share(share).pull()  # b knows of the file but has none of its bytes
        assert "big.bin" not in b.files()
        for dev in (a, b, c):
            await dev.node.close()
            lan_on(dev)
    # The relay is gone: b can get the file only from a (honest) and c (corrupt).
    lan_c = c.node.share(share).lan
    honest = lan_c.chunk

    served: list[bytes] = []

    def corrupt(share_id: bytes, chunk_id: bytes) -> bytes | None:
        data = honest(share_id, chunk_id)
        served.append(chunk_id)
        return None if data is None else bytes(x ^ 0x5A for x in data)

    lan_c.chunk = corrupt  # type: ignore[method-assign]
    stop, tasks = await start([a, b, c])
    try:
        await wait_for(lambda: b.files().get("big.bin") == big, 40)
        assert b.node.lan is not None
        assert lan_received(b) >= len(big)
        # b's first try found no peer; by its retry both were linked, and the first fetch (the
        # file and its manifest) is dealt out between them: c was asked, dropped and refused.
        assert served
        assert cid(c) in b.node.lan.banned
        assert cid(c) not in {link.peer_device_id for link in b.node.lan.peers.links()}
    finally:
        await stop_all([a, b, c], stop, tasks)


def cid(dev: Dev) -> bytes:
    return dev.node.device.device_id


def relay_bytes_down(dev: Dev) -> int:
    return int(dev.node.link.bytes_down)  # type: ignore[attr-defined]
