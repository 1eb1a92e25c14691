"""Serves or fetches content-addressed chunks over the LAN TLS transport, inside a namespace.

    python -m tests.lan.agent_transfer serve --listen 10.77.0.1 --port 4300 --seed HEX \
        --peer-key HEX --chunks 16 --chunk-kib 256 --content-seed 7
    python -m tests.lan.agent_transfer fetch --connect 10.77.0.1:4300 --seed HEX \
        --peer-key HEX --chunks 16 --chunk-kib 256 --content-seed 7

With ``--share-key HEX`` the server also announces that share over mDNS, and a fetcher given
``--share-key`` and ``--listen`` (its own address) instead of ``--connect`` finds the server that
way: no address or port configured.

The chunk messages are a minimal stand-in (``G`` + chunk ids asks, ``C`` + id + data answers,
``E`` ends a batch) so this agent exercises ``peer.lan.transfer``'s resume logic alone; the
connection, hello, authorization and resume logic are the real ``peer.lan`` code (the LAN session
itself runs in ``agent_session``). Reports JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
from collections.abc import AsyncIterator, Sequence

import blake3

from peer.lan.discovery import LanDiscovery, PeerSeen
from peer.lan.errors import PeerMisbehaved
from peer.lan.tls import TlsIdentity
from peer.lan.transfer import RetryPolicy, WantedChunks, fetch_chunks
from peer.lan.transport import LanConnection, LanLimits, LanServer, LocalDevice, connect
from protocol.keys import DeviceCertificate, UserIdentity
from seams import OsRandom, SystemClock

ID_BYTES = 32
LIMITS = LanLimits(
    read_timeout_s=1.0,
    write_timeout_s=2.0,
    connect_timeout_s=1.0,
    handshake_timeout_s=2.0,
    close_timeout_s=1.0,
)


def say(**message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def chunk_id(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def content(chunks: int, chunk_kib: int, seed: int) -> dict[bytes, bytes]:
    """The chunks both sides agree on (in real life: the manifest names them)."""
    out = {}
    for index in range(chunks):
        data = random.Random(f"{seed}/{index}").randbytes(chunk_kib * 1024)
        out[chunk_id(data)] = data
    return out


class SessionSource:
    """A ``RemoteChunks`` over one authorized connection."""

    def __init__(self, conn: LanConnection) -> None:
        self._conn = conn

    async def fetch(self, chunk_ids: Sequence[bytes]) -> AsyncIterator[tuple[bytes, bytes]]:
        await self._conn.send(b"G" + b"".join(chunk_ids))
        while True:
            frame = await self._conn.receive()
            if frame[:1] == b"E":
                return
            if frame[:1] != b"C" or len(frame) < 1 + ID_BYTES:
                raise PeerMisbehaved("unexpected message in a chunk session")
            yield frame[1 : 1 + ID_BYTES], frame[1 + ID_BYTES :]

    async def close(self) -> None:
        await self._conn.close()


# Both agents' devices are certified by this one user, so each can check the other's certificate.
AGENT_USER = UserIdentity(bytes(range(32)))


def device_and_authorize(args: argparse.Namespace) -> tuple[LocalDevice, object]:
    tls = TlsIdentity.from_seed(bytes.fromhex(args.seed))
    peer_key = bytes.fromhex(args.peer_key)

    def authorize(certificate: DeviceCertificate) -> bool:
        return certificate.device_key == peer_key and certificate.user_key == AGENT_USER.public_key

    certificate = AGENT_USER.certify(tls.public_key, "agent", 0)
    return LocalDevice(tls=tls, certificate=certificate), authorize


async def serve(args: argparse.Namespace, chunks: dict[bytes, bytes]) -> None:
    device, authorize = device_and_authorize(args)
    sessions = 0

    async def handle(conn: LanConnection) -> None:
        nonlocal sessions
        sessions += 1
        session, sent = sessions, 0
        try:
            while True:
                request = await conn.receive(timeout_s=30)
                if request[:1] != b"G":
                    return
                ids = [request[i : i + ID_BYTES] for i in range(1, len(request), ID_BYTES)]
                for wanted in ids:
                    if wanted in chunks:
                        await conn.send(b"C" + wanted + chunks[wanted])
                        sent += 1
                await conn.send(b"E")
        finally:
            say(event="served", session=session, chunks_sent=sent)

    server = LanServer(device=device, authorize=authorize, handler=handle, limits=LIMITS)
    await server.start(args.listen, args.port)
    say(event="listening", port=server.port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server, contextlib.AsyncExitStack() as stack:
        if args.share_key:
            await stack.enter_async_context(
                discovery(server.port, args.listen, bytes.fromhex(args.share_key))
            )
            say(event="announced")
        await stop.wait()


def discovery(port: int, address: str, share_key: bytes) -> LanDiscovery[str]:
    return LanDiscovery(
        port=port,
        discovery_keys={"share": share_key},
        bind_addresses=[address],
        clock=SystemClock(),
        random=OsRandom(),
    )


async def discover(address: str, share_key: bytes) -> tuple[str, int]:
    """Where the first device announcing our share listens: no address is configured."""
    # A fetch-only agent serves nothing; it announces a placeholder port, as it must announce.
    async with discovery(1, address, share_key) as finder:
        while True:
            event = await finder.next_event()
            if isinstance(event, PeerSeen) and "share" in event.shares:
                say(event="discovered", address=event.addresses[0], port=event.port)
                return event.addresses[0], event.port


async def fetch(args: argparse.Namespace, chunks: dict[bytes, bytes]) -> None:
    device, authorize = device_and_authorize(args)
    if args.connect:
        host, port = args.connect.rsplit(":", 1)
    else:
        async with asyncio.timeout(20):
            host, port = await discover(args.listen, bytes.fromhex(args.share_key))
    received: dict[bytes, bytes] = {}

    async def open_source() -> SessionSource:
        conn = await connect(
            host,
            int(port),
            device=device,
            authorize=authorize,
            limits=LIMITS,
            expected_key=bytes.fromhex(args.peer_key),
        )
        say(event="session_opened")
        return SessionSource(conn)

    async def store(cid: bytes, data: bytes) -> None:
        received[cid] = data
        say(event="chunk", received=len(received))

    wanted = WantedChunks(chunks, verify=lambda cid, data: chunk_id(data) == cid)
    report = await fetch_chunks(
        wanted,
        open_source,
        store,
        clock=SystemClock(),
        random=OsRandom(),
        retry=RetryPolicy(first_delay_s=0.1, max_delay_s=0.5, max_idle_sessions=40, batch_size=8),
    )
    say(
        event="done",
        per_session=report.chunks_per_session,
        bytes=report.bytes_received,
        complete=received == chunks,
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "fetch"])
    parser.add_argument("--listen")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--connect", help="host:port; without it, find the server by mDNS")
    parser.add_argument("--share-key", help="hex discovery key to announce (serve) or seek (fetch)")
    parser.add_argument("--seed", required=True)
    parser.add_argument("--peer-key", required=True)
    parser.add_argument("--chunks", type=int, required=True)
    parser.add_argument("--chunk-kib", type=int, required=True)
    parser.add_argument("--content-seed", type=int, required=True)
    args = parser.parse_args(argv)
    chunks = content(args.chunks, args.chunk_kib, args.content_seed)
    asyncio.run(serve(args, chunks) if args.mode == "serve" else fetch(args, chunks))


if __name__ == "__main__":
    main(sys.argv[1:])
