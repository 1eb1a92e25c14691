"""A small randomized program on the simulation runtime, and a checker for what TCP promises.

Three devices on two LANs keep connections to a relay and stream numbered frames through it
(reconnecting with backoff when a connection breaks), announce themselves by LAN broadcast, and hit
a BUGGIFY point; a chaos task partitions, isolates, makes LAN islands, crashes and restarts the
relay, and heals. ``StreamChecker`` then verifies that every stream's receiver saw exactly a
prefix of what was sent, in order, and all of it when the stream was closed cleanly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from seams import SeededRandom
from simulations.runtime import Address, SimConnection, Simulation

RELAY_PORT = 443
ANNOUNCE_PORT = 5353
DEVICES = {"a": "home", "b": "home", "c": "office"}


@dataclass
class StreamChecker:
    sent: dict[str, list[int]] = field(default_factory=dict)
    received: dict[str, list[int]] = field(default_factory=dict)
    closed_cleanly: set[str] = field(default_factory=set)

    def on_sent(self, stream: str, seq: int) -> None:
        self.sent.setdefault(stream, []).append(seq)

    def on_received(self, stream: str, seq: int) -> None:
        self.received.setdefault(stream, []).append(seq)

    def violations(self) -> list[str]:
        problems = []
        for stream in sorted(self.received):
            got, sent = self.received[stream], self.sent.get(stream, [])
            if got != sent[: len(got)]:
                problems.append(
                    f"{stream}: received {got[:12]}... is not a prefix of what was sent"
                )
            elif stream in self.closed_cleanly and got != sent:
                problems.append(f"{stream}: closed cleanly after {len(got)} of {len(sent)} frames")
        return problems


async def _relay_handler(conn: SimConnection, checker: StreamChecker) -> None:
    stream = ""
    try:
        async for frame in conn:
            name, seq, _ = frame.split(b"|", 2)
            stream = name.decode()
            checker.on_received(stream, int(seq))
            checker.on_sent(f"{stream}/ack", int(seq))
            await conn.send(b"ack|" + seq)
        checker.closed_cleanly.add(stream)
    except ConnectionResetError:
        return


async def _start_relay(sim: Simulation, checker: StreamChecker) -> None:
    async def handler(conn: SimConnection) -> None:
        await _relay_handler(conn, checker)

    await sim.net.host("relay").listen(RELAY_PORT, handler)


async def _read_acks(conn: SimConnection, stream: str, count: int, checker: StreamChecker) -> None:
    for _ in range(count):
        _, seq = (await conn.recv()).split(b"|")
        checker.on_received(f"{stream}/ack", int(seq))


async def _device(sim: Simulation, name: str, checker: StreamChecker, until_s: float) -> None:
    """Streams numbered frames to the relay without waiting for each ack (so a lost frame is
    followed by later ones), then waits for every ack and closes; reconnects after a break."""
    loop = asyncio.get_running_loop()
    host = sim.net.host(name)
    rng = sim.random(name)
    attempt = 0
    while loop.time() < until_s:
        attempt += 1
        try:
            conn = await host.connect("relay", RELAY_PORT)
        except (ConnectionRefusedError, TimeoutError):
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            continue
        stream = f"{name}#{attempt}"
        count = int(rng.uniform(5, 60))
        acks = asyncio.create_task(_read_acks(conn, stream, count, checker))
        try:
            for seq in range(count):
                padding = rng.bytes(int(rng.uniform(0, 3000)))
                checker.on_sent(stream, seq)
                await conn.send(f"{stream}|{seq}|".encode() + padding)
                if sim.buggify("device.pause"):
                    await asyncio.sleep(rng.uniform(1.0, 10.0))
                await asyncio.sleep(rng.uniform(0.01, 0.8))
            await asyncio.wait_for(acks, timeout=15.0)
            await conn.close()
        except (ConnectionResetError, TimeoutError):
            acks.cancel()
            conn.abort()
            await asyncio.sleep(rng.uniform(0.2, 2.0))


async def _announcer(sim: Simulation, name: str, until_s: float) -> None:
    loop = asyncio.get_running_loop()
    endpoint = await sim.net.host(name).bind_datagram(ANNOUNCE_PORT)
    rng = sim.random(f"{name}/announce")

    async def listen() -> None:
        while True:
            await endpoint.recv()

    listener = asyncio.create_task(listen())
    while loop.time() < until_s:
        endpoint.broadcast(ANNOUNCE_PORT, rng.bytes(16))
        endpoint.send_to(Address("relay", ANNOUNCE_PORT), b"hello relay")
        await asyncio.sleep(rng.uniform(1.0, 3.0))
    listener.cancel()


async def _chaos(sim: Simulation, checker: StreamChecker, until_s: float) -> None:
    loop = asyncio.get_running_loop()
    rng: SeededRandom = sim.random("chaos")
    net = sim.net
    hosts = [*sorted(DEVICES), "relay"]
    while loop.time() < until_s:
        await asyncio.sleep(rng.uniform(2.0, 20.0))
        action = rng.uniform(0.0, 5.0)
        if action < 1:
            groups: list[set[str]] = [set(), set()]
            for host in hosts:
                groups[int(rng.uniform(0.0, 2.0))].add(host)
            net.partition(groups)
        elif action < 2:
            net.isolate("relay")
        elif action < 3:
            net.lan_only()
        elif action < 4 and net.is_up("relay"):
            net.crash("relay")
            await asyncio.sleep(rng.uniform(0.5, 8.0))
            net.restart("relay")
            await _start_relay(sim, checker)
        else:
            net.heal()
    net.heal()


async def chatter(sim: Simulation, duration_s: float = 90.0) -> StreamChecker:
    """Run the program for ``duration_s`` virtual seconds (plus a healed tail) and return what
    the checker saw."""
    checker = StreamChecker()
    sim.net.add_host("relay")
    for name, lan in DEVICES.items():
        sim.net.add_host(name, lan=lan)
    await sim.net.host("relay").bind_datagram(ANNOUNCE_PORT)
    await _start_relay(sim, checker)
    await asyncio.gather(
        _chaos(sim, checker, duration_s),
        *(_device(sim, name, checker, duration_s + 30.0) for name in sorted(DEVICES)),
        *(_announcer(sim, name, duration_s) for name in sorted(DEVICES)),
    )
    return checker
