"""The Network seam on real asyncio sockets: the reference the simulated network is checked
against (the contract tests run the same scenarios on both).

It lives with the tests because ``simulations`` is no home for production code; the peer's own
transport should start from it (see the report that came with this file). Frames are a 4-byte
big-endian length and the payload. Errors are mapped to the builtins the seam promises.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

from simulations.runtime import Address, ConnectionHandler

_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 << 20


def _address(sockname: Any) -> Address:
    return Address(str(sockname[0]), int(sockname[1]))


class TcpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._local = _address(writer.get_extra_info("sockname"))
        self._peer = _address(writer.get_extra_info("peername"))
        self._closed = False

    @property
    def peer(self) -> Address:
        return self._peer

    @property
    def local(self) -> Address:
        return self._local

    async def send(self, frame: bytes) -> None:
        if self._closed or self._writer.is_closing():
            raise ConnectionResetError(f"send on a closed connection to {self._peer}")
        if len(frame) > MAX_FRAME_BYTES:
            raise ValueError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
        self._writer.write(_HEADER.pack(len(frame)) + frame)
        try:
            await self._writer.drain()
        except (BrokenPipeError, ConnectionAbortedError) as exc:
            raise ConnectionResetError(str(exc)) from exc

    async def recv(self) -> bytes:
        if self._closed:
            raise EOFError(f"recv on a closed connection to {self._peer}")
        try:
            header = await self._reader.readexactly(_HEADER.size)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise ConnectionResetError("connection broke inside a frame header") from exc
            raise EOFError(f"connection closed by {self._peer}") from exc
        (length,) = _HEADER.unpack(header)
        if length > MAX_FRAME_BYTES:
            raise ConnectionResetError(f"peer announced a frame of {length} bytes")
        try:
            return await self._reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError("connection broke inside a frame") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    def abort(self) -> None:
        self._closed = True
        transport = self._writer.transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0: close() sends RST instead of FIN, as a crashed stack would.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    async def _frames(self) -> AsyncIterator[bytes]:
        while True:
            try:
                yield await self.recv()
            except EOFError:
                return

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()


class TcpListener:
    def __init__(self, server: asyncio.Server) -> None:
        self._server = server
        self._address = _address(server.sockets[0].getsockname())

    @property
    def address(self) -> Address:
        return self._address

    async def close(self) -> None:
        # Stop accepting only: asyncio.Server.wait_closed would wait for every live connection.
        self._server.close()


class UdpEndpoint:
    def __init__(self, transport: asyncio.DatagramTransport, queue: asyncio.Queue[Any]) -> None:
        self._transport = transport
        self._queue = queue
        self._address = _address(transport.get_extra_info("sockname"))
        self._broadcast_host = "255.255.255.255"

    @property
    def address(self) -> Address:
        return self._address

    def send_to(self, dst: Address, data: bytes) -> None:
        self._transport.sendto(data, (dst.host, dst.port))

    def broadcast(self, port: int, data: bytes) -> None:
        self._transport.sendto(data, (self._broadcast_host, port))

    async def recv(self) -> tuple[Address, bytes]:
        item = await self._queue.get()
        if item is None:
            raise EOFError(f"datagram endpoint {self._address} is closed")
        data, src = item
        return _address(src), data

    def close(self) -> None:
        self._transport.close()
        self._queue.put_nowait(None)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[Any]) -> None:
        self._queue = queue

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._queue.put_nowait((data, addr))


class TcpHost:
    """The Network seam for a host whose address is ``name`` (an IP address or host name)."""

    def __init__(self, name: str = "127.0.0.1") -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def listen(self, port: int, handler: ConnectionHandler) -> TcpListener:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = TcpConnection(reader, writer)
            try:
                await handler(conn)
            finally:
                await conn.close()

        return TcpListener(await asyncio.start_server(accepted, self._name, port))

    async def connect(self, host: str, port: int) -> TcpConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return TcpConnection(reader, writer)

    async def bind_datagram(self, port: int) -> UdpEndpoint:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(queue), local_addr=(self._name, port), allow_broadcast=True
        )
        return UdpEndpoint(transport, queue)
