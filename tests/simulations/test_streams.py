"""Connections on the simulated network behave like TCP: in order, exactly once, until broken."""

from __future__ import annotations

import asyncio

import pytest

from simulations.runtime import (
    AddressInUse,
    ConnectionClosed,
    ConnectionRefused,
    HostUnreachable,
    LinkKind,
    LinkProfile,
    SimConnection,
    UnhandledErrors,
    run,
)
from tests.simulations.netkit import WAN_MS, fixed_faults, office_and_home


async def _collect(conn: SimConnection, into: list[bytes]) -> None:
    async for frame in conn:
        into.append(frame)


def test_frames_arrive_in_order_exactly_once_after_the_link_latency() -> None:
    async def main() -> tuple[list[bytes], list[float]]:
        net = office_and_home(fixed_faults())
        loop = asyncio.get_running_loop()
        received: list[bytes] = []
        arrivals: list[float] = []

        async def sink(conn: SimConnection) -> None:
            async for frame in conn:
                received.append(frame)
                arrivals.append(loop.time())

        await net.host("relay").listen(443, sink)
        conn = await net.host("a").connect("relay", 443)
        assert loop.time() == pytest.approx(2 * WAN_MS / 1000)  # the handshake's round trip
        sent_at = loop.time()
        for i in range(100):
            await conn.send(i.to_bytes(2, "big"))
        await conn.close()
        await asyncio.sleep(1)
        return received, [t - sent_at for t in arrivals]

    received, delays = run(main())
    assert received == [i.to_bytes(2, "big") for i in range(100)]
    assert all(d == pytest.approx(WAN_MS / 1000) for d in delays)


@pytest.mark.parametrize("seed", range(8))
def test_retransmissions_and_jitter_delay_but_never_reorder(seed: int) -> None:
    faults = fixed_faults(
        wan=LinkProfile(latency_ms=(5, 80), jitter_ms=40), stream_loss=0.3, rto_ms=(100, 900)
    )

    async def main() -> list[bytes]:
        net = office_and_home(faults, seed)
        received: list[bytes] = []
        done = asyncio.Event()

        async def sink(conn: SimConnection) -> None:
            await _collect(conn, received)
            done.set()

        await net.host("relay").listen(443, sink)
        conn = await net.host("c").connect("relay", 443)
        for i in range(300):
            await conn.send(b"%d" % i)
        await conn.close()
        await done.wait()
        return received

    assert run(main(), seed=seed) == [b"%d" % i for i in range(300)]


def test_an_echo_takes_one_round_trip() -> None:
    async def main() -> tuple[bytes, float]:
        net = office_and_home(fixed_faults())

        async def echo(conn: SimConnection) -> None:
            async for frame in conn:
                await conn.send(frame.upper())

        await net.host("relay").listen(443, echo)
        conn = await net.host("a").connect("relay", 443)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await conn.send(b"ping")
        reply = await conn.recv()
        return reply, loop.time() - start

    reply, rtt = run(main())
    assert reply == b"PING"
    assert rtt == pytest.approx(2 * WAN_MS / 1000)


def test_bandwidth_sets_the_delivery_time_of_large_frames() -> None:
    megabyte = 1_000_000
    faults = fixed_faults(
        wan=LinkProfile(latency_ms=(WAN_MS, WAN_MS), bandwidth_bytes_per_s=megabyte),
        window_bytes=8 * megabyte,
    )

    async def main() -> list[float]:
        net = office_and_home(faults)
        loop = asyncio.get_running_loop()
        arrivals: list[float] = []

        async def sink(conn: SimConnection) -> None:
            async for _ in conn:
                arrivals.append(loop.time())

        await net.host("relay").listen(443, sink)
        conn = await net.host("a").connect("relay", 443)
        start = loop.time()
        for _ in range(3):
            await conn.send(bytes(megabyte))
        await conn.close()
        await asyncio.sleep(10)
        return [t - start for t in arrivals]

    # Queued behind each other at 1 MB/s, then one latency each.
    assert run(main()) == pytest.approx([1.02, 2.02, 3.02])


def test_a_full_window_makes_the_sender_wait() -> None:
    kib = 1024
    faults = fixed_faults(
        wan=LinkProfile(latency_ms=(WAN_MS, WAN_MS), bandwidth_bytes_per_s=64 * kib),
        window_bytes=128 * kib,
    )

    async def main() -> list[float]:
        net = office_and_home(faults)
        loop = asyncio.get_running_loop()

        async def sink(conn: SimConnection) -> None:
            async for _ in conn:
                pass

        await net.host("relay").listen(443, sink)
        conn = await net.host("a").connect("relay", 443)
        start = loop.time()
        returned = []
        for _ in range(6):
            await conn.send(bytes(64 * kib))
            returned.append(loop.time() - start)
        return returned

    returned = run(main())
    # Two frames fit the window at once; each later one waits for the oldest to arrive.
    assert returned[:2] == [0.0, 0.0]
    assert returned[2:] == pytest.approx([1.02, 2.02, 3.02, 4.02])


def test_connecting_where_nobody_listens_is_refused_after_a_round_trip() -> None:
    async def main() -> float:
        net = office_and_home(fixed_faults())
        with pytest.raises(ConnectionRefusedError) as caught:
            await net.host("a").connect("relay", 443)
        assert isinstance(caught.value, ConnectionRefused)
        return asyncio.get_running_loop().time()

    assert run(main()) == pytest.approx(2 * WAN_MS / 1000)


def test_connecting_to_an_unknown_host_times_out() -> None:
    async def main() -> float:
        net = office_and_home(fixed_faults(connect_timeout_ms=2500))
        with pytest.raises(TimeoutError) as caught:
            await net.host("a").connect("nowhere", 443)
        assert isinstance(caught.value, HostUnreachable)
        return asyncio.get_running_loop().time()

    assert run(main()) == 2.5


def test_a_clean_close_delivers_everything_then_eof() -> None:
    async def main() -> tuple[list[bytes], str]:
        net = office_and_home(fixed_faults())
        accepted: asyncio.Queue[SimConnection] = asyncio.Queue()

        async def hold(conn: SimConnection) -> None:
            await accepted.put(conn)
            await asyncio.sleep(3600)

        await net.host("b").listen(7000, hold)
        client = await net.host("a").connect("b", 7000)
        server = await accepted.get()
        for word in (b"one", b"two", b"three"):
            await client.send(word)
        await client.close()
        got = [await server.recv() for _ in range(3)]
        with pytest.raises(EOFError) as caught:
            await server.recv()
        assert isinstance(caught.value, ConnectionClosed)
        with pytest.raises(ConnectionResetError):
            await client.send(b"after close")
        assert net.open_connections == 1  # the server end has not closed yet
        await server.close()
        await asyncio.sleep(1)
        assert net.open_connections == 0
        return got, str(caught.value)

    got, message = run(main())
    assert got == [b"one", b"two", b"three"]
    assert "closed by a:" in message


def test_abort_resets_the_other_side_after_what_was_already_sent() -> None:
    async def main() -> tuple[list[bytes], bool]:
        net = office_and_home(fixed_faults())
        accepted: asyncio.Queue[SimConnection] = asyncio.Queue()

        async def hold(conn: SimConnection) -> None:
            await accepted.put(conn)
            await asyncio.sleep(3600)

        await net.host("b").listen(7000, hold)
        client = await net.host("a").connect("b", 7000)
        server = await accepted.get()
        await client.send(b"before")
        client.abort()
        got = [await server.recv()]
        with pytest.raises(ConnectionResetError, match="reset by peer"):
            await server.recv()
        with pytest.raises(ConnectionResetError, match="aborted locally"):
            await client.recv()
        return got, server.is_reset

    assert run(main()) == ([b"before"], True)


def test_sending_to_a_closed_end_gets_the_sender_reset() -> None:
    async def main() -> str:
        net = office_and_home(fixed_faults())

        async def close_at_once(conn: SimConnection) -> None:
            await conn.close()

        await net.host("b").listen(7000, close_at_once)
        client = await net.host("a").connect("b", 7000)
        await asyncio.sleep(1)
        await client.send(b"anyone there?")
        await asyncio.sleep(1)
        with pytest.raises(ConnectionResetError) as caught:
            await client.send(b"hello?")
        return str(caught.value)

    assert "reset by peer" in run(main())


def test_a_network_reset_breaks_both_ends_without_delivering_the_frame() -> None:
    async def main() -> tuple[list[bytes], bool, bool]:
        net = office_and_home(fixed_faults(reset=1.0))
        received: list[bytes] = []
        server_ends: list[SimConnection] = []

        async def sink(conn: SimConnection) -> None:
            server_ends.append(conn)
            try:
                await _collect(conn, received)
            except ConnectionResetError:
                return

        await net.host("relay").listen(443, sink)
        client = await net.host("a").connect("relay", 443)
        await client.send(b"doomed")
        await asyncio.sleep(1)
        with pytest.raises(ConnectionResetError):
            await client.send(b"again")
        return received, client.is_reset, server_ends[0].is_reset

    assert run(main()) == ([], True, True)


def test_listening_twice_on_a_port_is_refused_and_closing_a_listener_stops_new_connects() -> None:
    async def main() -> bytes:
        net = office_and_home(fixed_faults())

        async def echo(conn: SimConnection) -> None:
            async for frame in conn:
                await conn.send(frame)

        listener = await net.host("b").listen(7000, echo)
        with pytest.raises(AddressInUse):
            await net.host("b").listen(7000, echo)
        kept = await net.host("a").connect("b", 7000)
        await listener.close()
        with pytest.raises(ConnectionRefusedError):
            await net.host("a").connect("b", 7000)
        await kept.send(b"still here")
        return await kept.recv()

    assert run(main()) == b"still here"


def test_a_handler_that_lets_an_error_escape_fails_the_run() -> None:
    async def main() -> None:
        net = office_and_home(fixed_faults())

        async def broken(conn: SimConnection) -> None:
            await conn.recv()
            raise RuntimeError("handler bug")

        await net.host("relay").listen(443, broken)
        conn = await net.host("a").connect("relay", 443)
        await conn.send(b"x")
        await asyncio.sleep(1)

    with pytest.raises(UnhandledErrors, match=r"handler relay:443<-a:49152 failed.*handler bug"):
        run(main())


def test_addresses_and_link_kinds() -> None:
    async def main() -> None:
        net = office_and_home(fixed_faults())

        async def idle(conn: SimConnection) -> None:
            await asyncio.sleep(1)

        await net.host("b").listen(7000, idle)
        first = await net.host("a").connect("b", 7000)
        second = await net.host("a").connect("b", 7000)
        assert (str(first.local), str(first.peer)) == ("a:49152", "b:7000")
        assert str(second.local) == "a:49153"
        assert net.link_kind("a", "b") is LinkKind.LAN
        assert net.link_kind("a", "c") is LinkKind.WAN
        assert net.link_kind("a", "relay") is LinkKind.WAN
        await first.close()
        await second.close()

    run(main())
