"""The peer's LAN streams over the simulated network, for the real ``DeviceLan`` on virtual time.

What differs from a device in production is only what ``peer.lan.streams.TlsStreams`` does: the
connection opens from the device's ``SimHost`` instead of a socket, and instead of a TLS handshake
each side states its device key in a first 32-byte write. The simulated network has no attacker,
so a stated key stands for a proven one; everything from the hello on is the production code's:
the version handshake, the certificate check against the key, the admission by the membership
chains (``LanAuthorizer``), the sessions and the links. Real TLS in memory would cost a handshake's
CPU per connection and make no run more deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from peer.fs.errors import SimulatedCrash
from peer.lan.errors import LinkError
from peer.lan.streams import Accepted, LanListener, ProvenKey
from simulations.runtime.errors import NetworkError
from simulations.runtime.network import SimHost, SimListener
from simulations.runtime.streams import SimConnection
from simulations.runtime.transport import SimTransport

KEY_BYTES = 32
KEY_TIMEOUT_S = 10.0
"""How long an accepted connection may take to state its key (the TLS handshake timeout)."""


class _Listener:
    def __init__(self, listener: SimListener) -> None:
        self._listener = listener

    @property
    def port(self) -> int:
        return self._listener.address.port

    def stop(self) -> None:
        self._listener.stop()

    async def wait_closed(self) -> None:
        return None


def _stream_pair(conn: SimConnection) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = SimTransport(conn, protocol)
    transport.start()
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def _exchange_keys(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, own_key: bytes, timeout_s: float
) -> bytes:
    writer.write(own_key)
    async with asyncio.timeout(timeout_s):
        return await reader.readexactly(KEY_BYTES)


class SimLanStreams:
    """``LanStreams`` of one simulated device: its host, and the device key it states."""

    def __init__(self, host: SimHost, device_key: bytes) -> None:
        self._host = host
        self._key = device_key

    async def open(
        self,
        host: str,
        port: int,
        *,
        timeout_s: float,
        local_address: str | None = None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, ProvenKey]:
        try:
            async with asyncio.timeout(timeout_s):
                conn = await self._host.connect(host, port)
        except (NetworkError, TimeoutError, ConnectionError) as exc:
            raise LinkError(f"cannot reach {host}:{port}: {exc}") from exc
        reader, writer = _stream_pair(conn)
        try:
            peer_key = await _exchange_keys(reader, writer, self._key, timeout_s)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            writer.transport.abort()
            raise LinkError(f"cannot reach {host}:{port}: {exc}") from exc
        return reader, writer, lambda: peer_key

    async def listen(
        self, hosts: str | Sequence[str], port: int, accepted: Accepted
    ) -> LanListener:
        own_key = self._key

        async def handle(conn: SimConnection) -> None:
            reader, writer = _stream_pair(conn)
            try:
                peer_key = await _exchange_keys(reader, writer, own_key, KEY_TIMEOUT_S)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                writer.transport.abort()
                return
            # A device whose folder died at a crash point goes down with it (the harness
            # crashes it); what its LAN handler saw of that is no error of the handler's.
            with contextlib.suppress(SimulatedCrash):
                await accepted(reader, writer, lambda: peer_key)

        return _Listener(await self._host.listen(port, handle))
