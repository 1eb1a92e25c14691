"""One contract, two networks: the simulated one must behave like real sockets on loopback.

Each scenario gets two hosts' views of a network (the ``HostNetwork`` seam) and runs unchanged on
the simulated network (virtual-time loop) and on real asyncio TCP/UDP (``tcp_reference``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from simulations.runtime import Address, Connection, HostNetwork, run
from tests.simulations.netkit import fixed_faults, office_and_home
from tests.simulations.tcp_reference import TcpHost

T = TypeVar("T")
Scenario = Callable[[HostNetwork, HostNetwork], Awaitable[T]]


def _run_on(kind: str, scenario: Scenario[T]) -> T:
    if kind == "sim":

        async def simulated() -> T:
            net = office_and_home(fixed_faults())
            return await scenario(net.host("a"), net.host("b"))

        return run(simulated())

    async def real() -> T:
        return await asyncio.wait_for(scenario(TcpHost(), TcpHost()), timeout=20)

    return asyncio.run(real())


@pytest.fixture(params=["sim", "tcp"])
def on(request: pytest.FixtureRequest) -> Callable[[Scenario[Any]], Any]:
    return lambda scenario: _run_on(request.param, scenario)


async def _echo(conn: Connection) -> None:
    async for frame in conn:
        await conn.send(frame)


def test_frames_keep_their_boundaries_and_order(on: Callable[[Scenario[Any]], Any]) -> None:
    frames = [b"", b"x", bytes(range(256)) * 4096, b"", b"end"]

    async def scenario(client_net: HostNetwork, server_net: HostNetwork) -> list[bytes]:
        listener = await server_net.listen(0, _echo)
        conn = await client_net.connect(server_net.name, listener.address.port)
        for frame in frames:
            await conn.send(frame)
        echoed = [await conn.recv() for _ in frames]
        await conn.close()
        await listener.close()
        return echoed

    assert on(scenario) == frames


def test_a_clean_close_delivers_everything_then_ends_iteration(
    on: Callable[[Scenario[Any]], Any],
) -> None:
    async def scenario(client_net: HostNetwork, server_net: HostNetwork) -> tuple[list[bytes], str]:
        outcome: asyncio.Future[tuple[list[bytes], str]] = (
            asyncio.get_running_loop().create_future()
        )

        async def collect(conn: Connection) -> None:
            got = [frame async for frame in conn]
            try:
                await conn.recv()
                after = "frame"
            except EOFError:
                after = "eof"
            outcome.set_result((got, after))

        listener = await server_net.listen(0, collect)
        conn = await client_net.connect(server_net.name, listener.address.port)
        for word in (b"one", b"two", b"three"):
            await conn.send(word)
        await conn.close()
        with pytest.raises(ConnectionResetError):
            await conn.send(b"after close")
        with pytest.raises(EOFError):
            await conn.recv()
        result = await outcome
        await listener.close()
        return result

    assert on(scenario) == ([b"one", b"two", b"three"], "eof")


def test_abort_resets_the_other_side(on: Callable[[Scenario[Any]], Any]) -> None:
    async def scenario(client_net: HostNetwork, server_net: HostNetwork) -> tuple[bytes, str]:
        outcome: asyncio.Future[tuple[bytes, str]] = asyncio.get_running_loop().create_future()

        async def serve(conn: Connection) -> None:
            first = await conn.recv()
            await conn.send(b"ack")
            try:
                await conn.recv()
                outcome.set_result((first, "frame"))
            except ConnectionResetError:
                outcome.set_result((first, "reset"))
            except EOFError:
                outcome.set_result((first, "eof"))

        listener = await server_net.listen(0, serve)
        conn = await client_net.connect(server_net.name, listener.address.port)
        await conn.send(b"hello")
        await conn.recv()
        conn.abort()
        result = await outcome
        await listener.close()
        return result

    assert on(scenario) == (b"hello", "reset")


def test_connecting_where_nobody_listens_is_refused(on: Callable[[Scenario[Any]], Any]) -> None:
    async def scenario(client_net: HostNetwork, server_net: HostNetwork) -> str:
        listener = await server_net.listen(0, _echo)
        port = listener.address.port
        await listener.close()
        try:
            await client_net.connect(server_net.name, port)
        except ConnectionRefusedError:
            return "refused"
        return "connected"

    assert on(scenario) == "refused"


def test_both_ends_agree_on_addresses(on: Callable[[Scenario[Any]], Any]) -> None:
    async def scenario(client_net: HostNetwork, server_net: HostNetwork) -> list[bool]:
        seen: asyncio.Queue[tuple[Address, Address]] = asyncio.Queue()

        async def serve(conn: Connection) -> None:
            await seen.put((conn.local, conn.peer))
            await _echo(conn)

        listener = await server_net.listen(0, serve)
        conn = await client_net.connect(server_net.name, listener.address.port)
        server_local, server_peer = await seen.get()
        await conn.close()
        await listener.close()
        return [
            conn.peer == server_local,
            server_peer == conn.local,
            conn.peer.port == listener.address.port,
            conn.peer.host == server_net.name,
        ]

    assert on(scenario) == [True, True, True, True]


def test_a_datagram_arrives_with_its_sender_address(on: Callable[[Scenario[Any]], Any]) -> None:
    async def scenario(client_net: HostNetwork, server_net: HostNetwork) -> tuple[bool, bytes]:
        receiver = await server_net.bind_datagram(0)
        sender = await client_net.bind_datagram(0)
        sender.send_to(Address(server_net.name, receiver.address.port), b"announce")
        src, data = await receiver.recv()
        sender.close()
        receiver.close()
        return src == sender.address, data

    assert on(scenario) == (True, b"announce")
