"""Partitions, isolation, LAN-only islands and crashes: cut paths hold, then break or heal."""

from __future__ import annotations

import asyncio

import pytest

from simulations.runtime import HostUnreachable, NetworkError, SimConnection, SimNetwork, run
from tests.simulations.netkit import LAN_MS, WAN_MS, fixed_faults, office_and_home

BREAK_S = 4.0
CONNECT_TIMEOUT_S = 2.0


def _net() -> SimNetwork:
    return office_and_home(
        fixed_faults(break_after_ms=BREAK_S * 1000, connect_timeout_ms=CONNECT_TIMEOUT_S * 1000)
    )


class _Accepted:
    """Server ends, in the order accepted."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[SimConnection] = asyncio.Queue()

    async def handler(self, conn: SimConnection) -> None:
        await self.queue.put(conn)
        await asyncio.sleep(1e6)


async def _pair(
    net: SimNetwork, src: str, dst: str, port: int = 7000
) -> tuple[SimConnection, SimConnection]:
    accepted = _Accepted()
    await net.host(dst).listen(port, accepted.handler)
    client = await net.host(src).connect(dst, port)
    return client, await accepted.queue.get()


def test_a_partition_breaks_crossing_connections_after_the_timeout_only() -> None:
    async def main() -> tuple[float, float, bytes]:
        net = _net()
        loop = asyncio.get_running_loop()
        to_relay, at_relay = await _pair(net, "a", "relay")
        lan_client, lan_server = await _pair(net, "a", "b", 7001)
        net.partition([{"a", "b"}, {"c", "relay"}])
        cut_at = loop.time()
        await to_relay.send(b"held")
        with pytest.raises(ConnectionResetError, match="timed out"):
            await at_relay.recv()
        relay_broke = loop.time() - cut_at
        with pytest.raises(ConnectionResetError, match="timed out"):
            await to_relay.recv()
        client_broke = loop.time() - cut_at
        await lan_client.send(b"inside the group")
        return relay_broke, client_broke, await lan_server.recv()

    assert run(main()) == (BREAK_S, BREAK_S, b"inside the group")


def test_healing_before_the_timeout_delivers_held_frames_in_order_after_the_heal() -> None:
    async def main() -> tuple[list[bytes], float, bool]:
        net = _net()
        loop = asyncio.get_running_loop()
        client, server = await _pair(net, "c", "relay")
        net.isolate("relay")
        for i in range(5):
            await client.send(b"%d" % i)
        await asyncio.sleep(BREAK_S / 2)
        net.heal()
        healed_at = loop.time()
        got = [await server.recv() for _ in range(5)]
        return got, loop.time() - healed_at, client.is_reset or server.is_reset

    got, after_heal, broken = run(main())
    assert got == [b"%d" % i for i in range(5)]
    assert after_heal == pytest.approx(WAN_MS / 1000)
    assert not broken


def test_new_connections_across_a_partition_time_out_and_work_again_after_healing() -> None:
    async def main() -> tuple[float, bytes]:
        net = _net()
        loop = asyncio.get_running_loop()

        async def echo(conn: SimConnection) -> None:
            async for frame in conn:
                await conn.send(frame)

        await net.host("relay").listen(443, echo)
        net.partition([{"a"}, {"relay"}])
        start = loop.time()
        with pytest.raises(HostUnreachable):
            await net.host("a").connect("relay", 443)
        waited = loop.time() - start
        net.heal()
        conn = await net.host("a").connect("relay", 443)
        await conn.send(b"back")
        return waited, await conn.recv()

    assert run(main()) == (CONNECT_TIMEOUT_S, b"back")


def test_a_partition_during_the_handshake_makes_connect_time_out() -> None:
    async def main() -> float:
        net = _net()
        loop = asyncio.get_running_loop()
        await net.host("relay").listen(443, _Accepted().handler)
        loop.call_later(WAN_MS / 2000, net.isolate, "relay")  # while the SYN is on the wire
        with pytest.raises(HostUnreachable):
            await net.host("a").connect("relay", 443)
        return loop.time()

    assert run(main()) == CONNECT_TIMEOUT_S


def test_isolating_the_relay_leaves_lan_peers_talking() -> None:
    async def main() -> list[bool]:
        net = _net()
        net.isolate("relay")
        return [
            net.reachable("a", "b"),
            net.reachable("a", "c"),
            net.reachable("a", "relay"),
            net.reachable("relay", "c"),
            net.reachable("relay", "relay"),
        ]

    assert run(main()) == [True, True, False, False, True]


def test_lan_only_makes_each_segment_an_island() -> None:
    async def main() -> tuple[list[bool], bytes]:
        net = _net()
        net.lan_only()
        reach = [
            net.reachable("a", "b"),
            net.reachable("a", "c"),
            net.reachable("c", "relay"),
            net.reachable("b", "relay"),
        ]
        client, server = await _pair(net, "b", "a")
        await client.send(b"lan sync")
        return reach, await server.recv()

    assert run(main()) == ([True, False, False, False], b"lan sync")


def test_hosts_named_in_no_group_form_one_group_together() -> None:
    async def main() -> list[bool]:
        net = _net()
        net.partition([{"a"}])
        return [net.reachable("b", "c"), net.reachable("c", "relay"), net.reachable("a", "b")]

    assert run(main()) == [True, True, False]


def test_partition_groups_must_name_known_hosts_once() -> None:
    async def main() -> None:
        net = _net()
        with pytest.raises(NetworkError, match="in two partition groups"):
            net.partition([{"a", "b"}, {"b"}])
        with pytest.raises(NetworkError, match="no host named 'z'"):
            net.partition([{"z"}])
        with pytest.raises(NetworkError, match="already exists"):
            net.add_host("a")

    run(main())


def test_a_crashed_host_drops_its_ends_at_once_and_peers_time_out() -> None:
    async def main() -> tuple[float, float]:
        net = _net()
        loop = asyncio.get_running_loop()
        to_relay, at_relay = await _pair(net, "a", "relay")
        start = loop.time()
        net.crash("a")
        with pytest.raises(ConnectionResetError, match="host crashed"):
            await to_relay.recv()
        with pytest.raises(ConnectionResetError, match="timed out"):
            await at_relay.recv()
        return loop.time() - start, float(net.is_up("a"))

    assert run(main()) == (BREAK_S, 0.0)


def test_a_crash_cancels_the_hosts_handlers_and_a_restart_starts_clean() -> None:
    async def main() -> tuple[list[str], bytes]:
        net = _net()
        events: list[str] = []

        async def handler(conn: SimConnection) -> None:
            try:
                await asyncio.sleep(1e6)
            except asyncio.CancelledError:
                events.append("handler cancelled")
                raise

        await net.host("relay").listen(443, handler)
        await net.host("a").connect("relay", 443)
        await asyncio.sleep(1)
        net.crash("relay")
        await asyncio.sleep(0)
        with pytest.raises(HostUnreachable):
            await net.host("a").connect("relay", 443)
        with pytest.raises(NetworkError, match="is down"):
            await net.host("relay").listen(443, handler)
        net.restart("relay")

        async def echo(conn: SimConnection) -> None:
            async for frame in conn:
                await conn.send(frame)

        await net.host("relay").listen(443, echo)
        conn = await net.host("a").connect("relay", 443)
        await conn.send(b"fresh")
        return events, await conn.recv()

    assert run(main()) == (["handler cancelled"], b"fresh")


def test_a_quick_restart_leaves_a_half_open_connection_that_resets_on_use() -> None:
    async def main() -> str:
        net = _net()
        client, _ = await _pair(net, "a", "b")
        net.crash("b")
        await asyncio.sleep(LAN_MS / 1000)
        net.restart("b")
        await client.send(b"are you there?")
        with pytest.raises(ConnectionResetError) as caught:
            await client.recv()
        return str(caught.value)

    assert "reset by peer" in run(main())
