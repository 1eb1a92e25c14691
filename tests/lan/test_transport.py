"""TLS transport on loopback: real TLS 1.3, real sockets, hostile peers."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from peer.lan.errors import (
    ConnectionClosed,
    FrameTooLarge,
    IdentityMismatch,
    IncompatiblePeer,
    LanError,
    LinkError,
    MalformedFrame,
    ReadTimeout,
    Unauthorized,
    WriteTimeout,
)
from peer.lan.tls import TlsIdentity, certificate_public_key, client_context
from peer.lan.transport import LanConnection, LanLimits, LanServer, LocalDevice, connect
from protocol.keys import DeviceCertificate, UserIdentity
from protocol.messages import DeviceCertificates

FAST = LanLimits(
    max_frame_bytes=64 * 1024,
    read_timeout_s=0.5,
    write_timeout_s=2.0,
    connect_timeout_s=2.0,
    handshake_timeout_s=0.5,
    close_timeout_s=1.0,
)


def header(size: int) -> bytes:
    return size.to_bytes(4, "big")


USER = UserIdentity.generate()


def make_device() -> LocalDevice:
    tls = TlsIdentity.from_seed(os.urandom(32))
    return LocalDevice(tls=tls, certificate=USER.certify(tls.public_key, "test", 1))


def admit_all(certificate: DeviceCertificate) -> bool:
    return certificate.user_key == USER.public_key


@dataclasses.dataclass
class Server:
    server: LanServer
    seen: list[LanConnection]
    errors: list[Exception]

    @property
    def port(self) -> int:
        return self.server.port


Handler = Callable[[LanConnection], Awaitable[None]]


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[LanServer] = []

    async def start(
        device: LocalDevice,
        handler: Handler | None = None,
        authorize: Callable[[DeviceCertificate], bool] = admit_all,
        limits: LanLimits = FAST,
    ) -> Server:
        seen: list[LanConnection] = []
        errors: list[Exception] = []

        async def handle(conn: LanConnection) -> None:
            seen.append(conn)
            try:
                if handler is not None:
                    await handler(conn)
            except LanError as exc:
                errors.append(exc)

        server = LanServer(device=device, authorize=authorize, handler=handle, limits=limits)
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return Server(server, seen, errors)

    yield start
    for server in servers:
        await server.close()


async def echo(conn: LanConnection) -> None:
    while True:
        frame = await conn.receive()
        await conn.send(b"echo:" + frame)


async def test_two_devices_exchange_frames_and_see_each_others_keys(start_server) -> None:
    a, b = make_device(), make_device()
    server = await start_server(a, echo)
    async with await connect(
        "127.0.0.1", server.port, device=b, authorize=admit_all, limits=FAST
    ) as conn:
        assert conn.peer.device_key == a.tls.public_key
        assert conn.peer.certificate == a.certificate
        for payload in (b"hello", os.urandom(60_000), b"x"):
            await conn.send(payload)
            assert await conn.receive() == b"echo:" + payload
    assert server.seen[0].peer.device_key == b.tls.public_key
    ssl_object = conn._writer.get_extra_info("ssl_object")
    assert ssl_object.version() == "TLSv1.3"


async def test_hello_naming_another_key_than_the_tls_certificate_is_refused(start_server) -> None:
    a, b, c = make_device(), make_device(), make_device()

    @dataclasses.dataclass(frozen=True)
    class Impostor(LocalDevice):
        claimed: LocalDevice = c

        def identity(self) -> DeviceCertificates:  # b's TLS key, c's certificate
            return self.claimed.identity()

    server = await start_server(a, echo)
    with pytest.raises(Unauthorized):
        await connect(
            "127.0.0.1", server.port, device=Impostor(b.tls, b.certificate), authorize=admit_all
        )
    await asyncio.sleep(0.05)
    assert server.seen == []


async def test_client_refuses_a_server_whose_hello_lies_about_its_key(start_server) -> None:
    a, b, c = make_device(), make_device(), make_device()

    @dataclasses.dataclass(frozen=True)
    class Impostor(LocalDevice):
        def identity(self) -> DeviceCertificates:
            return c.identity()

    server = await start_server(Impostor(a.tls, a.certificate), echo)
    with pytest.raises(IdentityMismatch):
        await connect("127.0.0.1", server.port, device=b, authorize=admit_all, limits=FAST)


async def test_unauthorized_client_gets_nothing_after_tls(start_server) -> None:
    a, b = make_device(), make_device()
    asked: list[DeviceCertificate] = []

    def refuse(certificate: DeviceCertificate) -> bool:
        asked.append(certificate)
        return False

    server = await start_server(a, echo, authorize=refuse)
    # Speak raw TLS so every byte the server sends after our hello is visible.
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=client_context(b.tls), server_hostname=""
    )
    for message in (b.hello(), b.identity()):
        data = message.encode()
        writer.write(header(len(data)) + data)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), timeout=2) == b""
    writer.close()
    assert asked == [b.certificate]
    assert server.seen == []


async def test_authorize_may_be_async_and_refusal_raises_unauthorized(start_server) -> None:
    a, b = make_device(), make_device()

    async def refuse(certificate: DeviceCertificate) -> bool:
        await asyncio.sleep(0)
        return False

    server = await start_server(a, echo, authorize=refuse)
    with pytest.raises(Unauthorized):
        await connect("127.0.0.1", server.port, device=b, authorize=admit_all, limits=FAST)


async def test_client_refuses_an_unauthorized_server(start_server) -> None:
    a, b = make_device(), make_device()
    server = await start_server(a, echo)
    with pytest.raises(Unauthorized):
        await connect("127.0.0.1", server.port, device=b, authorize=lambda c: False)


async def test_dialling_a_known_device_pins_its_key(start_server) -> None:
    a, b, c = make_device(), make_device(), make_device()
    server = await start_server(a, echo)
    with pytest.raises(IdentityMismatch):
        await connect(
            "127.0.0.1",
            server.port,
            device=b,
            authorize=admit_all,
            expected_key=c.tls.public_key,
        )
    conn = await connect(
        "127.0.0.1", server.port, device=b, authorize=admit_all, expected_key=a.tls.public_key
    )
    await conn.close()


async def test_certificate_outside_the_lan_scheme_fails_tls(start_server) -> None:
    a = make_device()
    server = await start_server(a, echo)
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftsync device")])
    self_signed = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(9999, 1, 1, tzinfo=datetime.UTC))
        .sign(key, None)
    )
    rogue = TlsIdentity(private_key=key, certificate_der=self_signed.public_bytes(_der()))
    # In TLS 1.3 the client's certificate travels in its last flight: the client may believe the
    # handshake done before the server's alert arrives, so it sees a refusal, not a TLS error.
    with pytest.raises((LinkError, Unauthorized)):
        await connect(
            "127.0.0.1",
            server.port,
            device=LocalDevice(rogue, USER.certify(rogue.public_key, "rogue", 1)),
            authorize=admit_all,
            limits=FAST,
        )
    assert server.seen == []


def _der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


async def test_oversized_frame_is_refused_before_its_body(start_server) -> None:
    a, b = make_device(), make_device()
    server = await start_server(a, echo)
    big = dataclasses.replace(FAST, max_frame_bytes=1024 * 1024)
    conn = await connect("127.0.0.1", server.port, device=b, authorize=admit_all, limits=big)
    await conn.send(b"x" * (FAST.max_frame_bytes + 1))
    with pytest.raises(ConnectionClosed):
        await conn.receive()
    await conn.close()
    assert len(server.errors) == 1
    assert isinstance(server.errors[0], FrameTooLarge)
    assert server.errors[0].limit == FAST.max_frame_bytes
    with pytest.raises(FrameTooLarge):
        await conn.send(b"x" * (big.max_frame_bytes + 1))


async def test_half_a_frame_then_silence_times_out(start_server) -> None:
    a, b = make_device(), make_device()
    server = await start_server(a, echo)
    conn = await connect("127.0.0.1", server.port, device=b, authorize=admit_all, limits=FAST)
    conn._writer.write(header(100) + b"only forty bytes of the hundred announced")
    await conn._writer.drain()
    await asyncio.sleep(FAST.read_timeout_s * 2)
    assert len(server.errors) == 1
    assert isinstance(server.errors[0], ReadTimeout)
    with pytest.raises(ConnectionClosed):
        await conn.receive(timeout_s=2)
    await conn.close()


async def test_half_a_hello_then_silence_is_dropped(start_server) -> None:
    a, b = make_device(), make_device()
    server = await start_server(a, echo)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=client_context(b.tls), server_hostname=""
    )
    writer.write(header(500)[:2])
    await writer.drain()
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(reader.read(), timeout=3) == b""
    assert asyncio.get_running_loop().time() - started < FAST.handshake_timeout_s + 1
    writer.close()
    assert server.seen == []


async def test_tls_below_1_3_is_refused(start_server) -> None:
    a, b = make_device(), make_device()
    server = await start_server(a, echo)
    context = client_context(b.tls)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.open_connection("127.0.0.1", server.port, ssl=context, server_hostname="")


async def test_unreachable_peer_is_a_link_error() -> None:
    from tests.conftest import free_port

    with pytest.raises(LinkError):
        await connect("127.0.0.1", free_port(), device=make_device(), authorize=admit_all)


def test_tls_certificate_is_a_pure_function_of_the_device_key() -> None:
    seed = os.urandom(32)
    first, second = TlsIdentity.from_seed(seed), TlsIdentity.from_seed(seed)
    assert first.certificate_der == second.certificate_der
    assert certificate_public_key(first.certificate_der) == first.public_key
    with pytest.raises(ValueError, match="32"):
        TlsIdentity.from_seed(b"short")


def test_tls_identity_matches_pynacl_device_key() -> None:
    from nacl.signing import SigningKey

    signing = SigningKey(os.urandom(32))
    assert TlsIdentity.from_seed(bytes(signing)).public_key == bytes(signing.verify_key)


async def test_a_failing_authorization_hook_admits_nobody(start_server) -> None:
    a, b = make_device(), make_device()

    def broken(certificate: DeviceCertificate) -> bool:
        raise RuntimeError("membership store unavailable")

    server = await start_server(a, echo, authorize=broken)
    with pytest.raises(Unauthorized):
        await connect("127.0.0.1", server.port, device=b, authorize=admit_all, limits=FAST)
    assert server.seen == []


async def test_connections_beyond_the_limit_are_dropped(start_server) -> None:
    a, b = make_device(), make_device()
    one = dataclasses.replace(FAST, max_connections=1)
    server = await start_server(a, echo, limits=one)
    first = await connect("127.0.0.1", server.port, device=b, authorize=admit_all, limits=FAST)
    with pytest.raises(LanError):
        await connect("127.0.0.1", server.port, device=b, authorize=admit_all, limits=FAST)
    await first.close()
    async with asyncio.timeout(5):
        while True:  # the server notices the close on its own schedule
            try:
                again = await connect(
                    "127.0.0.1", server.port, device=b, authorize=admit_all, limits=FAST
                )
                break
            except LanError:
                continue
    await again.send(b"ping")
    assert await again.receive() == b"echo:ping"
    await again.close()


async def test_empty_frames_are_refused_both_ways(start_server) -> None:
    a, b = make_device(), make_device()
    server = await start_server(a, echo)
    conn = await connect("127.0.0.1", server.port, device=b, authorize=admit_all, limits=FAST)
    with pytest.raises(ValueError, match="empty"):
        await conn.send(b"")
    conn._writer.write(header(0))
    with pytest.raises(ConnectionClosed):
        await conn.receive(timeout_s=2)
    await conn.close()
    assert len(server.errors) == 1
    assert isinstance(server.errors[0], MalformedFrame)


async def test_frames_that_arrive_together_are_delivered_one_by_one(start_server) -> None:
    a, b = make_device(), make_device()

    async def burst(conn: LanConnection) -> None:
        await conn.receive()
        conn._writer.write(b"".join(header(len(p)) + p for p in (b"one", b"two", b"three")))
        await conn.send(b"four")
        await conn.receive()

    server = await start_server(a, burst)
    async with await connect(
        "127.0.0.1", server.port, device=b, authorize=admit_all, limits=FAST
    ) as conn:
        await conn.send(b"go")
        assert [await conn.receive() for _ in range(4)] == [b"one", b"two", b"three", b"four"]


async def test_a_peer_that_stops_reading_makes_sends_time_out(start_server) -> None:
    a, b = make_device(), make_device()
    stop = asyncio.Event()

    async def deaf(conn: LanConnection) -> None:
        await stop.wait()

    server = await start_server(a, deaf)
    impatient = dataclasses.replace(FAST, write_timeout_s=0.3, close_timeout_s=0.3)
    conn = await connect("127.0.0.1", server.port, device=b, authorize=admit_all, limits=impatient)
    frame = os.urandom(FAST.max_frame_bytes)

    async def flood() -> None:
        for _ in range(2000):  # far more than any socket buffer holds
            await conn.send(frame)

    with pytest.raises(WriteTimeout):
        await flood()
    stop.set()
    await conn.close()


async def test_the_hello_negotiates_the_version_and_names_the_agent(start_server) -> None:
    a, b = make_device(), make_device()
    server = await start_server(dataclasses.replace(a, agent="laptop/2"), echo)
    async with await connect(
        "127.0.0.1", server.port, device=b, authorize=admit_all, limits=FAST
    ) as conn:
        assert (conn.peer.version, conn.peer.agent) == (1, "laptop/2")
        assert conn.peer.device_id == a.certificate.device_id
        await asyncio.sleep(0.01)
    assert server.seen[0].peer.agent == b.agent


async def test_no_common_version_is_explained_then_refused(start_server) -> None:
    a, b = make_device(), make_device()
    server = await start_server(dataclasses.replace(a, min_version=2, max_version=3), echo)
    with pytest.raises(IncompatiblePeer, match="update the older side"):
        await connect("127.0.0.1", server.port, device=b, authorize=admit_all, limits=FAST)
    assert server.seen == []


async def test_a_certificate_whose_signature_fails_is_refused(start_server) -> None:
    a, b = make_device(), make_device()
    server = await start_server(a, echo, authorize=lambda c: True)
    forged = dataclasses.replace(b.certificate, sig=bytes(64))
    with pytest.raises(Unauthorized):
        await connect(
            "127.0.0.1",
            server.port,
            device=dataclasses.replace(b, certificate=forged),
            authorize=admit_all,
            limits=FAST,
        )
    assert server.seen == []
