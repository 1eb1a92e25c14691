"""The LAN's network seam: how a byte stream to a peer is opened or accepted, and whose key it is.

``peer.lan.transport`` runs the hello and the admission over any ``LanStreams``. In production that
is ``TlsStreams``: TCP sockets with TLS 1.3 on the device certificates (``peer.lan.tls``), where the
peer's key is the one its TLS handshake proved. A simulation hands in streams over its in-memory
network instead, so the real hello, admission, sessions and links run on virtual time.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from peer.lan.errors import LinkError
from peer.lan.tls import certificate_public_key

ProvenKey = Callable[[], bytes | None]
"""The device key the peer proved on this stream (``None``: it proved none); raises
``IdentityMismatch`` when what it showed is unreadable. Asked when the hello is judged."""

Accepted = Callable[[asyncio.StreamReader, asyncio.StreamWriter, ProvenKey], Awaitable[None]]
"""``accepted(reader, writer, peer_key)``: a connection came in; it is the callee's to close."""


class LanListener(Protocol):
    @property
    def port(self) -> int: ...

    def stop(self) -> None:
        """Accept no more connections (the open ones are the acceptor's to end)."""

    async def wait_closed(self) -> None: ...


class LanStreams(Protocol):
    """Opens and accepts the byte streams LAN connections run over."""

    async def open(
        self,
        host: str,
        port: int,
        *,
        timeout_s: float,
        local_address: str | None = None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, ProvenKey]:
        """A stream to ``host:port`` and the peer's proven key; ``LinkError`` when it
        cannot be reached within ``timeout_s``."""
        ...

    async def listen(
        self, hosts: str | Sequence[str], port: int, accepted: Accepted
    ) -> LanListener:
        """Accept streams on ``port`` of each of ``hosts`` (0: any free port); ``OSError`` when
        the port is taken."""
        ...


class _TlsListener:
    def __init__(self, server: asyncio.Server) -> None:
        self._server = server

    @property
    def port(self) -> int:
        return int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        self._server.close()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()


def tls_peer_key(writer: asyncio.StreamWriter) -> bytes | None:
    """The key of the certificate the other side proved in the TLS handshake, if it showed one."""
    ssl_object = writer.get_extra_info("ssl_object")
    certificate_der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    return None if certificate_der is None else certificate_public_key(certificate_der)


class TlsStreams:
    """TCP with TLS 1.3 on this device's certificate: the production LAN streams."""

    def __init__(
        self, client: ssl.SSLContext, server: ssl.SSLContext, *, handshake_timeout_s: float
    ) -> None:
        self._client = client
        self._server = server
        self._handshake_timeout_s = handshake_timeout_s

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
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=self._client,
                    server_hostname="",
                    ssl_handshake_timeout=self._handshake_timeout_s,
                    local_addr=(local_address, 0) if local_address else None,
                )
        except TimeoutError as exc:
            raise LinkError(f"cannot reach {host}:{port}: timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise LinkError(f"cannot reach {host}:{port}: {exc}") from exc
        return reader, writer, lambda: tls_peer_key(writer)

    async def listen(
        self, hosts: str | Sequence[str], port: int, accepted: Accepted
    ) -> LanListener:
        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await accepted(reader, writer, lambda: tls_peer_key(writer))

        server = await asyncio.start_server(
            on_connection,
            hosts,
            port,
            ssl=self._server,
            ssl_handshake_timeout=self._handshake_timeout_s,
        )
        return _TlsListener(server)
