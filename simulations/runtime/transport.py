"""asyncio's Transport/Protocol pair over a simulated connection.

Libraries written against asyncio protocols (aiohttp's HTTP and WebSocket server and client,
among others) run unchanged on the simulated network through this adapter: each
``transport.write`` travels as one frame (TCP may split a byte stream anywhere, so protocols
cannot tell) and each frame arrives as one ``data_received``. Flow control follows asyncio's
contract: ``pause_writing`` above the high-water mark of unsent bytes, ``resume_writing`` below the
low one; ``pause_reading`` stops delivery until ``resume_reading``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from simulations.runtime.errors import NetworkError
from simulations.runtime.network import SimHost, SimListener
from simulations.runtime.streams import SimConnection

HIGH_WATER_BYTES = 64 * 1024


class SimTransport(asyncio.Transport):
    def __init__(self, conn: SimConnection, protocol: asyncio.BaseProtocol) -> None:
        super().__init__(
            extra={
                "peername": (conn.peer.host, conn.peer.port),
                "sockname": (conn.local.host, conn.local.port),
                "socket": None,
                "sslcontext": None,
            }
        )
        self._conn = conn
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._outgoing: deque[bytes] = deque()
        self._outgoing_bytes = 0
        self._high_water = HIGH_WATER_BYTES
        self._low_water = HIGH_WATER_BYTES // 4
        self._writing_paused = False
        self._reading = asyncio.Event()
        self._reading.set()
        self._closing = False
        self._lost = False
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.closed: asyncio.Future[None] = self._loop.create_future()

    def start(self) -> None:
        self._protocol.connection_made(self)
        self._reader = self._loop.create_task(self._read(), name=f"read {self._conn!r}")

    # -- asyncio.Transport -------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost:
            return  # asyncio's socket transports drop writes after close, too
        if not data:
            return
        chunk = bytes(data)
        if not self._outgoing and (self._writer is None or self._writer.done()):
            # Nothing queued before it: the frame goes now, as a socket transport writes to its
            # socket at once; only a frame that must wait for the window takes the writer task.
            try:
                if self._conn.send_now(chunk):
                    return
            except ConnectionResetError as exc:
                self._connection_lost(exc)
                return
        self._outgoing.append(chunk)
        self._outgoing_bytes += len(chunk)
        if self._writer is None or self._writer.done():
            self._writer = self._loop.create_task(self._write(), name=f"write {self._conn!r}")
        if not self._writing_paused and self._outgoing_bytes > self._high_water:
            self._writing_paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NetworkError("half-close is not modelled by the simulated network")

    def get_write_buffer_size(self) -> int:
        return self._outgoing_bytes

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high_water = HIGH_WATER_BYTES if high is None else high
        self._low_water = self._high_water // 4 if low is None else low

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._writer is None or self._writer.done():
            self._writer = self._loop.create_task(self._write(), name=f"close {self._conn!r}")

    def abort(self) -> None:
        self._closing = True
        self._outgoing.clear()
        self._outgoing_bytes = 0
        self._conn.abort()
        self._connection_lost(None)

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def is_reading(self) -> bool:
        return self._reading.is_set()

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    # -- pumping -----------------------------------------------------------------------------

    async def _write(self) -> None:
        try:
            while self._outgoing:
                chunk = self._outgoing.popleft()
                await self._conn.send(chunk)
                self._outgoing_bytes -= len(chunk)
                if self._writing_paused and self._outgoing_bytes <= self._low_water:
                    self._writing_paused = False
                    self._protocol.resume_writing()
            if self._closing:
                await self._conn.close()
                self._connection_lost(None)
        except ConnectionResetError as exc:
            self._connection_lost(exc)

    async def _read(self) -> None:
        protocol = self._protocol
        try:
            while not self._lost:
                await self._reading.wait()
                frame = await self._conn.recv()
                if isinstance(protocol, asyncio.Protocol):
                    protocol.data_received(frame)
        except EOFError:
            if self._lost:
                return
            keep_open = isinstance(protocol, asyncio.Protocol) and protocol.eof_received()
            if not keep_open:
                self.close()
        except ConnectionResetError as exc:
            self._connection_lost(exc)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        self._loop.call_soon(self._protocol.connection_lost, exc)
        if not self.closed.done():
            self.closed.set_result(None)


async def open_protocol(
    host: SimHost, dst: str, port: int, protocol_factory: Callable[[], asyncio.BaseProtocol]
) -> tuple[SimTransport, asyncio.BaseProtocol]:
    """``loop.create_connection`` on the simulated network, from ``host``."""
    conn = await host.connect(dst, port)
    protocol = protocol_factory()
    transport = SimTransport(conn, protocol)
    transport.start()
    return transport, protocol


async def serve_protocol(
    host: SimHost, port: int, protocol_factory: Callable[[], asyncio.BaseProtocol]
) -> SimListener:
    """``loop.create_server`` on the simulated network: one protocol per accepted connection."""

    async def handle(conn: SimConnection) -> None:
        transport = SimTransport(conn, protocol_factory())
        transport.start()
        await transport.closed

    return await host.listen(port, handle)
