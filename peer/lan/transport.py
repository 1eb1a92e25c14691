"""LAN connections: TLS 1.3 with both device keys, then a hello each way, then frames.

The order on every connection:

1. TLS 1.3 (``peer.lan.tls``): each side proves it holds the private key of the certificate it
   shows; nothing else is trusted yet.
2. The connecting side sends its hello (``peer.lan.hello``: the protocol's ``hello`` and its
   ``device_certificates``). The accepting side negotiates the version, checks that the
   certificate names the key of the client's TLS certificate and verifies, then asks ``authorize``.
   A device that is refused gets nothing more: the connection is closed without a word.
3. The accepting side answers with ``welcome`` and its own certificate; the connecting side runs
   the same checks (and, when it dialled a known device, that the key is the one it expected).
4. Frames (``protocol.frames``: the same framing as every other driftsync stream), each one
   protocol message, in both directions, until either side closes. The hello is read exactly, so
   nothing a peer sends after it is buffered before the peer is admitted.

The streams come from a ``peer.lan.streams.LanStreams`` (TLS over TCP unless a simulation hands in
its own); they tell which key the peer proved.

There is no handshake of our own: TLS authenticates keys, and the application only compares the
key it authenticated with the identity claimed, then asks the engine whether that identity may talk
to us. Every read has a deadline and every frame a maximum size.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Self

from peer.lan.errors import (
    BadHello,
    ConnectionClosed,
    IdentityMismatch,
    IncompatiblePeer,
    LanError,
    LinkError,
    MalformedFrame,
    Unauthorized,
)
from peer.lan.framing import DEFAULT_MAX_FRAME_BYTES, FrameReader, write_frame
from peer.lan.hello import (
    MAX_HELLO_BYTES,
    claimed_identity,
    identity_message,
    read_hello_message,
)
from peer.lan.streams import LanListener, LanStreams, ProvenKey, TlsStreams
from peer.lan.tls import TlsIdentity, client_context, server_context
from protocol.errors import ProtocolError, UnsupportedVersion
from protocol.keys import DeviceCertificate
from protocol.messages import (
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    DeviceCertificates,
    ErrorMsg,
    Hello,
    Message,
    Welcome,
    decode_message,
    negotiate_version,
)

log = logging.getLogger(__name__)

Authorize = Callable[[DeviceCertificate], bool | Awaitable[bool]]
"""``authorize(certificate) -> bool``: may this (verified, key-bound) device talk to us at all?

``peer.lan.authorizer.LanAuthorizer.admits_any`` is the one the engine passes: admitted for at
least one share. Which shares a connection serves is the session's business."""

ConnectionHandler = Callable[["LanConnection"], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class LanLimits:
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    read_timeout_s: float = 30.0
    write_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    close_timeout_s: float = 5.0
    max_connections: int = 64
    """Connections past TLS a server keeps open; more are dropped as soon as TLS completes."""


AGENT = "driftsync-lan/1"


@dataclasses.dataclass(frozen=True)
class LocalDevice:
    """What this device shows: its TLS identity, its device certificate and its agent."""

    tls: TlsIdentity
    certificate: DeviceCertificate
    agent: str = AGENT
    min_version: int = MIN_PROTOCOL_VERSION
    max_version: int = PROTOCOL_VERSION

    def hello(self) -> Hello:
        return Hello(min_version=self.min_version, max_version=self.max_version, agent=self.agent)

    def identity(self) -> DeviceCertificates:
        return identity_message(self.certificate)

    # Built once: reconnect loops must not reload the key for every attempt.
    @functools.cached_property
    def client_context(self) -> ssl.SSLContext:
        return client_context(self.tls)

    @functools.cached_property
    def server_context(self) -> ssl.SSLContext:
        return server_context(self.tls)

    def tls_streams(self, limits: LanLimits) -> LanStreams:
        """TCP with TLS 1.3 on this device's certificate: the streams of a real device."""
        return TlsStreams(
            self.client_context,
            self.server_context,
            handshake_timeout_s=limits.handshake_timeout_s,
        )


@dataclasses.dataclass(frozen=True)
class PeerIdentity:
    """The other side, once TLS proved the key and ``authorize`` admitted the certificate."""

    certificate: DeviceCertificate
    version: int
    """The protocol version both sides speak on this connection."""
    agent: str

    @property
    def device_key(self) -> bytes:
        return self.certificate.device_key

    @property
    def device_id(self) -> bytes:
        return self.certificate.device_id


class LanConnection:
    """An authenticated, authorized connection to one peer device, carrying frames."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: PeerIdentity,
        limits: LanLimits,
    ) -> None:
        self._frames = FrameReader(reader, limits.max_frame_bytes)
        self._writer = writer
        self._limits = limits
        self._read_lock = asyncio.Lock()
        self.peer = peer
        self.peer_address: tuple[str, int] = writer.get_extra_info("peername")[:2]

    async def send(self, payload: bytes) -> None:
        await write_frame(
            self._writer,
            payload,
            max_bytes=self._limits.max_frame_bytes,
            timeout_s=self._limits.write_timeout_s,
        )

    async def receive(self, timeout_s: float | None = None) -> bytes:
        """The next frame; waits at most ``timeout_s`` (default: the limits' read timeout)."""
        async with self._read_lock:
            return await self._frames.next(
                self._limits.read_timeout_s if timeout_s is None else timeout_s
            )

    async def send_message(self, message: Message) -> None:
        await self.send(message.encode())

    async def receive_message(self, timeout_s: float | None = None) -> Message:
        """The next frame as a protocol message, strictly decoded (``MalformedFrame`` if not)."""
        payload = await self.receive(timeout_s)
        try:
            return decode_message(payload, max_bytes=self._limits.max_frame_bytes)
        except ProtocolError as exc:
            raise MalformedFrame(f"not a protocol message: {exc.message}") from exc

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    async def close(self) -> None:
        await _close_writer(self._writer, self._limits.close_timeout_s)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _close_writer(writer: asyncio.StreamWriter, timeout_s: float) -> None:
    writer.close()
    try:
        async with asyncio.timeout(timeout_s):
            await writer.wait_closed()
    except (TimeoutError, ConnectionError, ssl.SSLError):
        # The peer never answered our close_notify (or the link is gone): drop it hard.
        writer.transport.abort()


async def _admit(
    peer_key: ProvenKey,
    identity: DeviceCertificates,
    authorize: Authorize,
    *,
    version: int,
    agent: str,
) -> PeerIdentity:
    """The peer, if its certificate names the key it proved and ``authorize`` agrees."""
    proven = peer_key()
    if proven is None:
        raise IdentityMismatch("peer showed no TLS certificate")
    certificate = claimed_identity(identity, proven)
    try:
        verdict = authorize(certificate)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception as exc:
        # A hook that fails must not admit anyone, nor leave the connection half-open.
        log.exception("LAN authorization hook failed")
        raise Unauthorized(f"authorization failed: {exc}") from exc
    if verdict is not True:
        raise Unauthorized(f"device {certificate.device_key.hex()[:16]}… is not admitted")
    return PeerIdentity(certificate=certificate, version=version, agent=agent)


async def _write_hello(writer: asyncio.StreamWriter, message: Message, limits: LanLimits) -> None:
    await write_frame(
        writer, message.encode(), max_bytes=MAX_HELLO_BYTES, timeout_s=limits.handshake_timeout_s
    )


async def connect(
    host: str,
    port: int,
    *,
    device: LocalDevice,
    authorize: Authorize,
    limits: LanLimits = LanLimits(),
    expected_key: bytes | None = None,
    local_address: str | None = None,
    streams: LanStreams | None = None,
) -> LanConnection:
    """Open an authorized connection to the device listening at ``host:port``.

    ``expected_key`` pins the peer to one device key (a static peer, or one seen before).
    Raises ``LinkError`` when the peer cannot be reached, ``PeerMisbehaved`` or ``Unauthorized``
    when it is not who it must be.
    """
    streams = streams or device.tls_streams(limits)
    reader, writer, peer_key = await streams.open(
        host,
        port,
        timeout_s=limits.connect_timeout_s + limits.handshake_timeout_s,
        local_address=local_address,
    )
    try:
        await _write_hello(writer, device.hello(), limits)
        await _write_hello(writer, device.identity(), limits)
        timeout_s = limits.handshake_timeout_s
        try:
            answer = await read_hello_message(reader, Message, timeout_s=timeout_s)
        except ConnectionClosed as exc:
            raise Unauthorized(f"{host}:{port} hung up after our hello: not admitted") from exc
        if isinstance(answer, ErrorMsg):
            raise IncompatiblePeer(f"{host}:{port} refused our hello: {answer.message}")
        if not isinstance(answer, Welcome):
            raise BadHello(f"expected welcome from {host}:{port}, got {answer.TYPE}")
        if not device.min_version <= answer.version <= device.max_version:
            raise BadHello(f"{host}:{port} chose protocol version {answer.version}")
        identity = await read_hello_message(reader, DeviceCertificates, timeout_s=timeout_s)
        if expected_key is not None and identity.certificates[0].device_key != expected_key:
            raise IdentityMismatch(f"{host}:{port} is not the device we expected")
        peer = await _admit(
            peer_key, identity, authorize, version=answer.version, agent=answer.agent
        )
    except BaseException:
        await _close_writer(writer, limits.close_timeout_s)
        raise
    return LanConnection(reader, writer, peer, limits)


class LanServer:
    """Accepts LAN connections and hands each authorized one to ``handler``.

    The connection is closed when the handler returns; refused peers never reach it.
    """

    def __init__(
        self,
        *,
        device: LocalDevice,
        authorize: Authorize,
        handler: ConnectionHandler,
        limits: LanLimits = LanLimits(),
        streams: LanStreams | None = None,
    ) -> None:
        self._device = device
        self._authorize = authorize
        self._handler = handler
        self._limits = limits
        self._streams = streams or device.tls_streams(limits)
        self._server: LanListener | None = None
        # Insertion-ordered (a dict, not a set): closing cancels connections in the order they
        # came, not in an order of memory addresses, so a simulated run replays the same.
        self._tasks: dict[asyncio.Task[None], None] = {}

    @property
    def port(self) -> int:
        if self._server is None:
            raise LanError("server is not started")
        return self._server.port

    async def start(self, host: str | Sequence[str], port: int = 0) -> None:
        """Listen on ``host:port`` (several hosts: one port on each; port 0 picks a free one,
        see ``port``)."""
        self._server = await self._streams.listen(host, port, self._accept)

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer_key: ProvenKey
    ) -> None:
        if len(self._tasks) >= self._limits.max_connections:
            log.warning(
                "dropping LAN connection from %s: too many open", writer.get_extra_info("peername")
            )
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks[task] = None
        try:
            await self._serve_one(reader, writer, peer_key)
        finally:
            self._tasks.pop(task, None)

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer_key: ProvenKey
    ) -> None:
        peer_address = writer.get_extra_info("peername")
        try:
            try:
                peer = await self._handshake(reader, writer, peer_key)
            except LanError as exc:
                log.info("refused LAN peer %s: %s", peer_address, exc)
                return
            connection = LanConnection(reader, writer, peer, self._limits)
            try:
                await self._handler(connection)
            except LinkError as exc:
                log.info("LAN peer %s: %s", peer_address, exc)
            except LanError as exc:
                log.warning("LAN peer %s misbehaved: %s", peer_address, exc)
        finally:
            await _close_writer(writer, self._limits.close_timeout_s)

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer_key: ProvenKey
    ) -> PeerIdentity:
        timeout_s = self._limits.handshake_timeout_s
        hello = await read_hello_message(reader, Hello, timeout_s=timeout_s)
        try:
            version = negotiate_version(
                hello.min_version,
                hello.max_version,
                self._device.min_version,
                self._device.max_version,
            )
        except UnsupportedVersion as exc:
            # Part of the handshake, and the one refusal worth explaining: update a side.
            await _write_hello(writer, ErrorMsg.from_error(exc), self._limits)
            raise IncompatiblePeer(exc.message) from exc
        identity = await read_hello_message(reader, DeviceCertificates, timeout_s=timeout_s)
        peer = await _admit(peer_key, identity, self._authorize, version=version, agent=hello.agent)
        await _write_hello(writer, Welcome(version=version, agent=self._device.agent), self._limits)
        await _write_hello(writer, self._device.identity(), self._limits)
        return peer

    async def close(self) -> None:
        """Stop listening and end every open connection."""
        if self._server is not None:
            self._server.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._limits.close_timeout_s):
                    await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
