"""Sessions driven over the real TLS transport on loopback: members sync, strangers get nothing."""

from __future__ import annotations

import asyncio

import pytest

from peer.lan import events as ev
from peer.lan.bandwidth import BandwidthLimits
from peer.lan.errors import Unauthorized
from peer.lan.fetch import fetch_from_peers
from peer.lan.link import LinkTimings
from peer.lan.peers import LanPeers
from peer.lan.session import SessionState
from peer.lan.transport import connect
from protocol.messages import ChainHead, WantBlocks
from protocol.vv import VersionVector
from tests.lan.world import LAN_LIMITS, World, chunk_id_of, local_device, node, side, until

CHUNKS = [bytes([i]) * (20_000 + i) for i in range(6)]
IDS = [chunk_id_of(c) for c in CHUNKS]


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(7)


async def test_a_member_syncs_envelopes_and_chunks_over_tls(world: World) -> None:
    laptop = node(side(world.laptop, world.authorizer(), world.envelopes(world.laptop, 3), CHUNKS))
    phone = node(side(world.phone, world.authorizer(height=1), world.envelopes(world.phone, 2)))
    port = await laptop.serve("127.0.0.1")
    try:
        link = await phone.dial("127.0.0.1", port)
        everything = VersionVector({world.laptop.device_id: 3, world.phone.device_id: 2})
        await until(
            lambda: (
                phone.side.envelopes.vector(world.share) == everything
                and laptop.side.envelopes.vector(world.share) == everything
            )
        )
        assert phone.side.authorizer.chain(world.share).height == world.chain.height
        assert link.session.state is SessionState.SYNCING
        got = await link.fetch_chunks(world.share, [*IDS, chunk_id_of(b"nobody")])
        assert got == dict(zip(IDS, CHUNKS, strict=True))
        # A change made now is pushed at once.
        later = world.envelopes(world.laptop, 1, start=4)
        laptop.side.envelopes.add(later)
        assert await laptop.links[0].push(world.share, later) == 1
        await until(lambda: phone.side.envelopes.vector(world.share)[world.laptop.device_id] == 4)
        counters = phone.bandwidth.peers()[world.laptop.device_id]
        assert counters.received_bytes > sum(map(len, CHUNKS))
        assert counters.sent_bytes > 0
        served = laptop.bandwidth.peers()[world.phone.device_id]
        assert served.sent_bytes == counters.received_bytes
    finally:
        await phone.close()
        await laptop.close()


@pytest.mark.parametrize("stranger", ["outsider_pc", "removed_pc", "tablet"])
async def test_strangers_are_refused_after_the_handshake(world: World, stranger: str) -> None:
    laptop = node(side(world.laptop, world.authorizer(), world.envelopes(world.laptop, 1), CHUNKS))
    # The stranger's own (old) chain would admit the laptop: the refusal is the laptop's.
    intruder = node(side(getattr(world, stranger), world.authorizer(height=1)))
    port = await laptop.serve("127.0.0.1")
    try:
        with pytest.raises(Unauthorized):
            await intruder.dial("127.0.0.1", port)
        assert laptop.links == []
        assert laptop.side.chunks.served == 0
        assert laptop.bandwidth.peers() == {}
    finally:
        await laptop.close()


async def test_a_corrupt_peer_is_dropped_and_its_chunks_come_from_another(world: World) -> None:
    liar = node(side(world.laptop, world.authorizer(), chunks=CHUNKS, corrupt=True))
    honest = node(side(world.desktop, world.authorizer(), chunks=CHUNKS))
    phone = node(side(world.phone, world.authorizer()), BandwidthLimits(down_bps=10_000_000))
    ports = [await liar.serve("127.0.0.1"), await honest.serve("127.0.0.1")]
    try:
        links = [await phone.dial("127.0.0.1", port) for port in ports]
        await until(lambda: all(link.session.shares() == [world.share] for link in links))
        result = await fetch_from_peers(links, world.share, IDS)
        assert result.chunks == dict(zip(IDS, CHUNKS, strict=True))
        assert result.missing == []
        assert set(result.bytes_from) == {world.desktop.device_id}
        assert any(isinstance(e, ev.PeerMisbehaved) for e in phone.events)
        assert links[0].session.state is SessionState.ERROR
        await until(lambda: links[0].done.is_set() and liar.links[0].done.is_set())
    finally:
        await phone.close()
        await liar.close()
        await honest.close()


async def test_what_no_peer_has_is_left_for_the_relay(world: World) -> None:
    laptop = node(side(world.laptop, world.authorizer(), chunks=CHUNKS[:2]))
    phone = node(side(world.phone, world.authorizer()))
    port = await laptop.serve("127.0.0.1")
    try:
        link = await phone.dial("127.0.0.1", port)
        await until(lambda: link.session.shares() == [world.share])
        result = await fetch_from_peers([link], world.share, IDS)
        assert set(result.chunks) == set(IDS[:2])
        assert result.missing == IDS[2:]
        assert link.session.state is SessionState.SYNCING
    finally:
        await phone.close()
        await laptop.close()


async def test_peers_push_to_all_fetch_from_all_and_report_status(world: World) -> None:
    laptop = node(side(world.laptop, world.authorizer(), chunks=CHUNKS[:3]))
    desktop = node(side(world.desktop, world.authorizer(), chunks=CHUNKS[3:]))
    phone = node(side(world.phone, world.authorizer()))
    peers = LanPeers(phone.bandwidth)
    try:
        for server in (laptop, desktop):
            peers.add(await phone.dial("127.0.0.1", await server.serve("127.0.0.1")))
        await until(lambda: len(peers.links(world.share)) == 2)
        mine = world.envelopes(world.phone, 2)
        phone.side.envelopes.add(mine)
        assert await peers.push(world.share, mine) == 4
        await until(
            lambda: all(
                n.side.envelopes.vector(world.share).get(world.phone.device_id) == 2
                for n in (laptop, desktop)
            )
        )
        result = await peers.fetch(world.share, IDS)
        assert result.missing == []
        status = {s.device_name: s for s in peers.status()}
        assert set(status) == {"laptop", "desktop"}
        for name, sent_chunks in (("laptop", CHUNKS[:3]), ("desktop", CHUNKS[3:])):
            assert status[name].state == "syncing"
            assert status[name].shares == (world.share,)
            assert status[name].address == "127.0.0.1"
            assert status[name].received_bytes > sum(map(len, sent_chunks))
            assert status[name].sent_bytes > 0
        await phone.links[0].close()
        await until(lambda: len(peers.links()) == 1)
    finally:
        await phone.close()
        await laptop.close()
        await desktop.close()


async def test_a_peer_asking_faster_than_it_reads_is_held_back(world: World) -> None:
    big = [bytes([i]) * 200_000 for i in range(8)]
    laptop = node(side(world.laptop, world.authorizer(), chunks=big))
    laptop.timings = LinkTimings(max_queued_bytes=256 * 1024)
    port = await laptop.serve("127.0.0.1")
    phone = local_device(world.phone)
    connection = await connect(
        "127.0.0.1", port, device=phone, authorize=lambda c: True, limits=LAN_LIMITS
    )
    try:
        chain = world.chain
        await connection.send_message(
            ChainHead(share=world.share, height=chain.height, head_hash=chain.head_hash)
        )
        request = WantBlocks(share=world.share, block_ids=tuple(chunk_id_of(c) for c in big))
        for _ in range(60):  # ~96 MB of answers asked for, none read
            await connection.send_message(request)
        await until(lambda: bool(laptop.links) and laptop.links[0].queued_bytes > 0)
        await asyncio.sleep(0.5)
        # At most the limit plus one request's answers wait in memory.
        assert laptop.links[0].queued_bytes <= 256 * 1024 + sum(map(len, big)) + 4096
        assert laptop.side.chunks.served < 60 * len(big)
    finally:
        await connection.close()
        await laptop.close()
