"""Datagrams are lost, duplicated and reordered; streams on the same faulty network never are."""

from __future__ import annotations

import asyncio

import pytest

from simulations.runtime import (
    Address,
    AddressInUse,
    LinkKind,
    LinkProfile,
    NetworkError,
    SimConnection,
    SimNetwork,
    run,
)
from tests.simulations.netkit import fixed_faults, office_and_home

PORT = 5353


async def _receiver(net: SimNetwork, host: str) -> tuple[asyncio.Task[None], list[bytes]]:
    endpoint = await net.host(host).bind_datagram(PORT)
    got: list[bytes] = []

    async def loop() -> None:
        while True:
            _, data = await endpoint.recv()
            got.append(data)

    return asyncio.get_running_loop().create_task(loop()), got


async def _send_numbers(net: SimNetwork, src: str, dst: str, count: int) -> None:
    endpoint = await net.host(src).bind_datagram(PORT)
    for i in range(count):
        endpoint.send_to(Address(dst, PORT), b"%d" % i)


def _numbers(count: int) -> list[bytes]:
    return [b"%d" % i for i in range(count)]


def test_without_faults_datagrams_arrive_once_in_order_with_the_sender_address() -> None:
    async def main() -> tuple[Address, bytes, list[bytes]]:
        net = office_and_home(fixed_faults())
        receiver = await net.host("relay").bind_datagram(PORT)
        sender = await net.host("a").bind_datagram(PORT)
        sender.send_to(Address("relay", PORT), b"hello")
        src, data = await receiver.recv()
        for i in range(50):
            sender.send_to(Address("relay", PORT), b"%d" % i)
        rest = [(await receiver.recv())[1] for _ in range(50)]
        return src, data, rest

    assert run(main()) == (Address("a", PORT), b"hello", _numbers(50))


def test_total_loss_drops_every_datagram_and_counts_it() -> None:
    async def main() -> tuple[list[bytes], int, int]:
        net = office_and_home(fixed_faults(loss=1.0))
        task, got = await _receiver(net, "b")
        await _send_numbers(net, "a", "b", 20)
        await asyncio.sleep(5)
        task.cancel()
        counters = net.counters_by_link()[("a", "b")]
        return got, counters.frames_sent, counters.datagrams_dropped

    assert run(main()) == ([], 20, 20)


def test_duplication_delivers_copies() -> None:
    async def main() -> tuple[list[bytes], int]:
        net = office_and_home(fixed_faults(dup=1.0))
        task, got = await _receiver(net, "b")
        await _send_numbers(net, "a", "b", 10)
        await asyncio.sleep(5)
        task.cancel()
        return got, net.counters_by_link()[("a", "b")].datagrams_duplicated

    got, duplicated = run(main())
    assert sorted(got) == sorted(_numbers(10) * 2)
    assert duplicated == 10


def test_reordering_changes_the_order_but_not_the_set() -> None:
    async def main() -> list[bytes]:
        net = office_and_home(fixed_faults(reorder=0.5, reorder_ms=(1.0, 50.0)), seed=3)
        task, got = await _receiver(net, "b")
        await _send_numbers(net, "a", "b", 100)
        await asyncio.sleep(5)
        task.cancel()
        return got

    got = run(main())
    assert sorted(got) == sorted(_numbers(100))
    assert got != _numbers(100)


def test_broadcast_reaches_the_same_lan_segment_only() -> None:
    async def main() -> tuple[bool, list[bytes], list[bytes], list[bytes]]:
        net = office_and_home(fixed_faults())
        net.add_host("d", lan="home")
        task_b, at_b = await _receiver(net, "b")
        task_c, at_c = await _receiver(net, "c")
        task_relay, at_relay = await _receiver(net, "relay")
        await net.host("d").bind_datagram(PORT + 1)  # bound elsewhere: not a recipient
        announcer = await net.host("a").bind_datagram(PORT)
        announcer.broadcast(PORT, b"share-token")
        try:
            await asyncio.wait_for(announcer.recv(), timeout=1)
            heard_itself = True
        except TimeoutError:
            heard_itself = False
        for task in (task_b, task_c, task_relay):
            task.cancel()
        return heard_itself, at_b, at_c, at_relay

    assert run(main()) == (False, [b"share-token"], [], [])


def test_a_wan_only_host_broadcasts_to_nobody() -> None:
    async def main() -> int:
        net = office_and_home(fixed_faults())
        endpoint = await net.host("relay").bind_datagram(PORT)
        endpoint.broadcast(PORT, b"x")
        await asyncio.sleep(1)
        return sum(c.frames_sent for c in net.counters_by_link().values())

    assert run(main()) == 0


def test_datagrams_do_not_cross_a_partition_even_when_sent_before_it() -> None:
    async def main() -> tuple[list[bytes], int]:
        net = office_and_home(fixed_faults())
        task, got = await _receiver(net, "relay")
        sender = await net.host("a").bind_datagram(PORT)
        sender.send_to(Address("relay", PORT), b"in flight")
        net.isolate("relay")
        sender.send_to(Address("relay", PORT), b"after the cut")
        await asyncio.sleep(1)
        task.cancel()
        return got, net.counters_by_link()[("a", "relay")].datagrams_dropped

    assert run(main()) == ([], 2)


def test_endpoints_bind_once_and_refuse_use_after_close() -> None:
    async def main() -> None:
        net = office_and_home(fixed_faults())
        endpoint = await net.host("a").bind_datagram(PORT)
        with pytest.raises(AddressInUse):
            await net.host("a").bind_datagram(PORT)
        endpoint.close()
        with pytest.raises(NetworkError, match="closed"):
            endpoint.send_to(Address("b", PORT), b"x")
        with pytest.raises(EOFError):
            await endpoint.recv()
        await net.host("a").bind_datagram(PORT)  # the port is free again

    run(main())


@pytest.mark.parametrize("seed", range(6))
def test_streams_ignore_datagram_loss_and_duplication(seed: int) -> None:
    faults = fixed_faults(
        loss=0.5, dup=0.5, reorder=0.5, wan=LinkProfile(latency_ms=(5, 50), jitter_ms=30)
    )

    async def main() -> list[bytes]:
        net = office_and_home(faults, seed)
        received: list[bytes] = []
        done = asyncio.Event()

        async def sink(conn: SimConnection) -> None:
            async for frame in conn:
                received.append(frame)
            done.set()

        await net.host("relay").listen(443, sink)
        conn = await net.host("a").connect("relay", 443)
        for i in range(200):
            await conn.send(b"%d" % i)
        await conn.close()
        await done.wait()
        return received

    assert run(main(), seed=seed) == _numbers(200)


def test_counters_split_bytes_by_link_and_path_kind() -> None:
    async def main() -> SimNetwork:
        net = office_and_home(fixed_faults())

        async def sink(conn: SimConnection) -> None:
            async for _ in conn:
                pass

        await net.host("relay").listen(443, sink)
        await net.host("b").listen(7000, sink)
        to_relay = await net.host("a").connect("relay", 443)
        to_b = await net.host("a").connect("b", 7000)
        await to_relay.send(bytes(1000))
        await to_relay.send(bytes(500))
        await to_b.send(bytes(4000))
        udp = await net.host("c").bind_datagram(PORT)
        udp.send_to(Address("relay", PORT), bytes(10))  # nobody bound there: dropped on arrival
        await asyncio.sleep(1)
        return net

    net = run(main())
    links = net.counters_by_link()
    assert (links[("a", "relay")].frames_delivered, links[("a", "relay")].bytes_delivered) == (
        2,
        1500,
    )
    assert links[("a", "b")].bytes_delivered == 4000
    assert (links[("c", "relay")].bytes_sent, links[("c", "relay")].datagrams_dropped) == (10, 1)
    through_relay = net.counters_touching("relay")
    assert (through_relay.bytes_sent, through_relay.frames_sent) == (1510, 3)
    assert net.counters_touching("b").bytes_sent == 4000
    kinds = net.counters_by_kind()
    assert kinds[LinkKind.LAN].bytes_sent == 4000
    assert kinds[LinkKind.WAN].bytes_sent == 1510
    assert kinds[LinkKind.WAN].bytes_delivered == 1500
