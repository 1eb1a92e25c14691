"""Real aiohttp servers and clients on the simulated network, through asyncio's protocol API."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from simulations.runtime import HostUnreachable, SimConnection, SimNetwork, Simulation
from simulations.runtime.aiohttp_sim import SimConnector, SimSite
from simulations.runtime.transport import SimTransport, open_protocol, serve_protocol
from tests.simulations.netkit import WAN_MS, fixed_faults

NOTIFY_EVERY_S = 30.0


def _app() -> web.Application:
    async def info(request: web.Request) -> web.Response:
        return web.json_response({"n": int(request.query["n"]), "peer": request.remote})

    async def upload(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"size": len(body), "sum": sum(body) % 65521})

    async def notifications(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)

        async def read() -> None:
            # aiohttp answers pings only while someone reads: a push-only handler must, too.
            async for _ in ws:
                pass

        reader = asyncio.create_task(read())
        try:
            for seq in range(10):
                await asyncio.sleep(NOTIFY_EVERY_S)
                await ws.send_json({"seq": seq})
            await ws.close()
        finally:
            reader.cancel()
        return ws

    app = web.Application(client_max_size=8 << 20)
    app.router.add_get("/info", info)
    app.router.add_post("/upload", upload)
    app.router.add_get("/notify", notifications)
    return app


async def _serve(net: SimNetwork) -> web.AppRunner:
    runner = web.AppRunner(_app())
    await runner.setup()
    await SimSite(runner, net.host("relay"), 443).start()
    return runner


def _sim(seed: int = 1) -> Simulation:
    sim = Simulation(seed, faults=fixed_faults())
    sim.net.add_host("relay")
    sim.net.add_host("laptop", lan="home")
    return sim


def test_http_requests_reuse_one_kept_alive_connection() -> None:
    sim = _sim()

    async def main() -> tuple[list[dict[str, object]], float]:
        runner = await _serve(sim.net)
        replies = []
        async with aiohttp.ClientSession(connector=SimConnector(sim.net.host("laptop"))) as s:
            for n in range(5):
                async with s.get(f"http://relay:443/info?n={n}") as response:
                    replies.append(await response.json())
        await runner.cleanup()
        return replies, asyncio.get_running_loop().time()

    replies, elapsed = sim.run(main())
    assert replies == [{"n": n, "peer": "laptop"} for n in range(5)]
    assert sum(" tcp.connect " in line for line in sim.trace.lines) == 1
    # One handshake round trip, then one round trip per request.
    assert elapsed == pytest.approx(6 * 2 * WAN_MS / 1000)


def test_a_large_upload_arrives_whole() -> None:
    sim = _sim()
    body = bytes(range(256)) * 8192  # 2 MiB

    async def main() -> dict[str, int]:
        runner = await _serve(sim.net)
        async with (
            aiohttp.ClientSession(connector=SimConnector(sim.net.host("laptop"))) as s,
            s.post("http://relay:443/upload", data=body) as response,
        ):
            reply = await response.json()
        await runner.cleanup()
        return reply

    assert sim.run(main()) == {"size": len(body), "sum": sum(body) % 65521}
    assert sim.net.counters_by_link()[("laptop", "relay")].bytes_delivered > len(body)


def test_a_websocket_lives_through_minutes_of_heartbeats_in_no_time() -> None:
    sim = _sim()

    async def main() -> tuple[list[int], float]:
        runner = await _serve(sim.net)
        seqs = []
        async with (
            aiohttp.ClientSession(connector=SimConnector(sim.net.host("laptop"))) as s,
            s.ws_connect("http://relay:443/notify", heartbeat=15) as ws,
        ):
            async for message in ws:
                seqs.append(message.json()["seq"])
        await runner.cleanup()
        return seqs, asyncio.get_running_loop().time()

    seqs, elapsed = sim.run(main())
    assert seqs == list(range(10))
    assert elapsed > 10 * NOTIFY_EVERY_S


def test_a_partition_closes_the_websocket_and_refuses_new_requests() -> None:
    sim = Simulation(1, faults=fixed_faults(break_after_ms=5000, connect_timeout_ms=3000))
    sim.net.add_host("relay")
    sim.net.add_host("laptop", lan="home")

    async def main() -> tuple[aiohttp.WSMsgType, OSError]:
        runner = await _serve(sim.net)
        async with aiohttp.ClientSession(connector=SimConnector(sim.net.host("laptop"))) as s:
            async with s.ws_connect("http://relay:443/notify") as ws:
                sim.net.isolate("relay")
                message = await ws.receive()
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await s.get("http://relay:443/info?n=1")
        await runner.cleanup()
        return message.type, caught.value.os_error

    kind, error = sim.run(main())
    assert kind is aiohttp.WSMsgType.CLOSED
    assert isinstance(error, HostUnreachable)


def test_the_same_seed_replays_an_aiohttp_run() -> None:
    def trace_hash(seed: int) -> str:
        sim = Simulation(seed, faults=fixed_faults(stream_loss=0.2))
        sim.net.add_host("relay")
        sim.net.add_host("laptop", lan="home")

        async def main() -> None:
            runner = await _serve(sim.net)
            async with aiohttp.ClientSession(connector=SimConnector(sim.net.host("laptop"))) as s:
                for n in range(10):
                    async with s.get(f"http://relay:443/info?n={n}") as response:
                        await response.read()
            await runner.cleanup()

        sim.run(main())
        return sim.trace_hash

    assert trace_hash(4) == trace_hash(4)
    assert trace_hash(4) != trace_hash(5)


class _Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.events: list[str] = []
        self.data = b""
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.events.append("eof")
        return False

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(f"lost {type(exc).__name__ if exc else None}")
        self.lost.set_result(None)


FRAMES = 40  # 1.25 MiB: the window's 1 MiB, and 256 KiB more


def test_protocols_get_flow_control_eof_and_exactly_one_connection_lost() -> None:
    sim = _sim()

    async def main() -> tuple[list[str], list[str], int, dict[str, object]]:
        servers: list[_Recorder] = []

        def server_factory() -> _Recorder:
            servers.append(_Recorder())
            return servers[-1]

        await serve_protocol(sim.net.host("relay"), 443, server_factory)
        transport, client = await open_protocol(sim.net.host("laptop"), "relay", 443, _Recorder)
        assert isinstance(transport, SimTransport)
        assert isinstance(client, _Recorder)
        info = {
            "peer": transport.get_extra_info("peername"),
            "socket": transport.get_extra_info("socket"),
        }
        # Frames go straight into the connection's 1 MiB window, as into a socket's buffer;
        # what the window cannot take waits in the transport, past the 64 KiB high-water mark.
        for _ in range(FRAMES):
            transport.write(bytes(32 * 1024))
        transport.close()
        transport.write(b"dropped after close")
        await client.lost
        await servers[0].lost
        return client.events, servers[0].events, len(servers[0].data), info

    client_events, server_events, received, info = sim.run(main())
    assert client_events == ["made", "pause", "resume", "lost None"]
    assert server_events == ["made", "eof", "lost None"]
    assert received == FRAMES * 32 * 1024
    assert info == {"peer": ("relay", 443), "socket": None}


def test_a_reset_reaches_the_protocol_as_connection_lost_with_the_error() -> None:
    sim = _sim()

    async def main() -> list[str]:
        accepted: asyncio.Queue[SimConnection] = asyncio.Queue()

        async def hold(conn: SimConnection) -> None:
            await accepted.put(conn)
            await asyncio.sleep(3600)

        await sim.net.host("relay").listen(443, hold)
        _, client = await open_protocol(sim.net.host("laptop"), "relay", 443, _Recorder)
        assert isinstance(client, _Recorder)
        (await accepted.get()).abort()
        await client.lost
        return client.events

    assert sim.run(main()) == ["made", "lost ConnectionReset"]
