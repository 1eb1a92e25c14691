"""A small world for LAN session tests: users, devices, a share's chain, envelopes, chunks.

Everything is real (certificates, chain entries, sealed envelopes); only the engine is replaced
by in-memory stores that satisfy the session's ``EnvelopeSource`` and ``ChunkSource``. Chunk ids
are SHA-256 of the plaintext here: the session takes the verification as an injected callable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
from collections.abc import Callable, Iterable

from peer.lan import events as ev
from peer.lan.authorizer import LanAuthorizer
from peer.lan.bandwidth import BandwidthLimits, LanBandwidth
from peer.lan.link import LanLink, LinkTimings
from peer.lan.session import LanSession, SessionLimits
from peer.lan.tls import TlsIdentity
from peer.lan.transport import LanConnection, LanLimits, LanServer, LocalDevice, connect
from protocol.chain import (
    ZERO_HASH,
    MembershipChain,
    Role,
    make_add_user,
    make_genesis,
    make_remove_user,
    make_revoke_device,
    verify_chain,
)
from protocol.envelope import Envelope, seal_envelope
from protocol.keys import CertifiedDevice, DeviceIdentity, UserIdentity
from protocol.messages import Message, decode_message
from protocol.vv import VersionVector
from seams import SystemClock

NOW_MS = 1_764_000_000_000
METADATA_KEY = bytes(range(32))
LAN_LIMITS = LanLimits(
    read_timeout_s=5.0,
    write_timeout_s=5.0,
    connect_timeout_s=3.0,
    handshake_timeout_s=3.0,
    close_timeout_s=1.0,
)


def chunk_id_of(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def verify_chunk(share: bytes, chunk_id: bytes, data: bytes) -> bool:
    return chunk_id_of(data) == chunk_id


@dataclasses.dataclass
class World:
    """Owner (laptop, desktop); editor (phone; a tablet it revoked); a removed user; an outsider."""

    rand: random.Random
    owner: UserIdentity
    laptop: CertifiedDevice
    desktop: CertifiedDevice
    editor: UserIdentity
    phone: CertifiedDevice
    tablet: CertifiedDevice
    removed_user: UserIdentity
    removed_pc: CertifiedDevice
    outsider: UserIdentity
    outsider_pc: CertifiedDevice
    share: bytes
    chain: MembershipChain

    @classmethod
    def build(cls, seed: int = 1) -> World:
        rand = random.Random(seed)
        draw = rand.randbytes
        owner, editor, removed_user, outsider = (UserIdentity.generate(draw) for _ in range(4))

        def certified(user: UserIdentity, name: str) -> CertifiedDevice:
            device = DeviceIdentity.generate(draw)
            return CertifiedDevice(device, user.certify(device.public_key, name, NOW_MS))

        laptop, desktop = certified(owner, "laptop"), certified(owner, "desktop")
        phone, tablet = certified(editor, "phone"), certified(editor, "tablet")
        removed_pc, outsider_pc = certified(removed_user, "pc"), certified(outsider, "pc")
        share = draw(16)
        chain = MembershipChain(make_genesis(laptop, share, draw(32), NOW_MS))
        chain.append(make_add_user(chain, laptop, editor.public_key, Role.EDITOR, NOW_MS))
        chain.append(make_add_user(chain, laptop, removed_user.public_key, Role.VIEWER, NOW_MS))
        chain.append(make_remove_user(chain, laptop, removed_user.public_key, {}, NOW_MS))
        revocation = editor.revoke(tablet.device_id, NOW_MS)
        chain.append(make_revoke_device(chain, phone, revocation, 0, NOW_MS))
        return cls(
            rand,
            owner,
            laptop,
            desktop,
            editor,
            phone,
            tablet,
            removed_user,
            removed_pc,
            outsider,
            outsider_pc,
            share,
            chain,
        )

    def chain_copy(self, height: int | None = None) -> MembershipChain:
        """An independent replica of the chain, cut at ``height`` (default: the head)."""
        end = self.chain.height if height is None else height
        return verify_chain(self.chain.entries[: end + 1], self.share)

    def authorizer(self, height: int | None = None) -> LanAuthorizer:
        return LanAuthorizer({self.share: self.chain_copy(height)})

    def envelopes(self, device: CertifiedDevice, count: int, start: int = 1) -> list[Envelope]:
        out: list[Envelope] = []
        prev = ZERO_HASH
        for counter in range(1, start + count):
            envelope = seal_envelope(
                device.identity,
                share=self.share,
                epoch=0,
                height=self.chain.height,
                counter=counter,
                prev=prev,
                seen={},
                blocks=(),
                update=f"update {counter}".encode(),
                metadata_key=METADATA_KEY,
                random_bytes=self.rand.randbytes,
            )
            prev = envelope.envelope_hash
            if counter >= start:
                out.append(envelope)
        return out


def local_device(device: CertifiedDevice) -> LocalDevice:
    """The LAN identity of a device: its TLS key is its device key."""
    return LocalDevice(
        tls=TlsIdentity.from_seed(device.identity.seed), certificate=device.certificate
    )


class MemoryEnvelopes:
    """An ``EnvelopeSource`` over a list; ``add`` plays the engine applying envelopes."""

    def __init__(self, envelopes: Iterable[Envelope] = ()) -> None:
        self.stored: dict[tuple[bytes, int], Envelope] = {}
        self.served = 0
        self.add(envelopes)

    def add(self, envelopes: Iterable[Envelope]) -> None:
        for envelope in envelopes:
            self.stored[(envelope.header.device, envelope.header.counter)] = envelope

    def vector(self, share: bytes) -> VersionVector:
        vector = VersionVector()
        for device, counter in sorted(self.stored):
            if counter == vector.get(device) + 1:
                vector = vector.with_counter(device, counter)
        return vector

    def envelopes_after(self, share: bytes, vector: VersionVector) -> list[Envelope]:
        found = [
            envelope
            for (device, counter), envelope in sorted(self.stored.items())
            if envelope.header.share == share and counter > vector.get(device)
        ]
        self.served += len(found)
        return found


class MemoryChunks:
    """A ``ChunkSource`` over a dict; ``corrupt`` serves wrong bytes for every chunk."""

    def __init__(self, chunks: Iterable[bytes] = (), *, corrupt: bool = False) -> None:
        self.chunks = {chunk_id_of(data): data for data in chunks}
        self.corrupt = corrupt
        self.served = 0

    def chunk(self, share: bytes, chunk_id: bytes) -> bytes | None:
        data = self.chunks.get(chunk_id)
        if data is None:
            return None
        self.served += 1
        return data[::-1] + b"!" if self.corrupt else data


@dataclasses.dataclass
class Side:
    device: CertifiedDevice
    authorizer: LanAuthorizer
    envelopes: MemoryEnvelopes
    chunks: MemoryChunks
    session: LanSession = dataclasses.field(init=False)
    received: list[ev.Event] = dataclasses.field(default_factory=list)
    sent: list[Message] = dataclasses.field(default_factory=list)

    def take_events(self) -> list[ev.Event]:
        out, self.received = self.received, []
        return out


def side(
    device: CertifiedDevice,
    authorizer: LanAuthorizer,
    envelopes: Iterable[Envelope] = (),
    chunks: Iterable[bytes] = (),
    *,
    corrupt: bool = False,
) -> Side:
    return Side(
        device, authorizer, MemoryEnvelopes(envelopes), MemoryChunks(chunks, corrupt=corrupt)
    )


class ConnectionPair:
    """Two sessions joined by an in-memory link: every message is encoded and strictly decoded.

    The ``EnvelopesReceived`` a side sees are applied to its store, as the engine would after
    validating them, so catch-up and pushes can be checked end to end.
    """

    def __init__(self, a: Side, b: Side, limits: SessionLimits | None = None) -> None:
        self.a, self.b = a, b
        limits = limits or SessionLimits()
        for this, other in ((a, b), (b, a)):
            this.session = LanSession(
                peer=other.device.certificate,
                authorizer=this.authorizer,
                envelopes=this.envelopes,
                chunks=this.chunks,
                verify_chunk=verify_chunk,
                limits=limits,
            )

    def start(self) -> None:
        self.a.session.start()
        self.b.session.start()
        self.pump()

    def pump(self, max_rounds: int = 100) -> None:
        """Deliver messages both ways until both sides are quiet."""
        for _ in range(max_rounds):
            moved = self._deliver(self.a, self.b) + self._deliver(self.b, self.a)
            self._collect(self.a)
            self._collect(self.b)
            if not moved:
                return
        raise AssertionError("the sessions never went quiet")

    def _deliver(self, sender: Side, receiver: Side) -> int:
        messages = sender.session.data_to_send()
        for message in messages:
            sender.sent.append(message)
            if receiver.session.state.value in ("closed", "error"):
                continue  # the connection is gone: nothing more reaches the receiver
            receiver.session.feed(decode_message(message.encode()))
        return len(messages)

    def _collect(self, this: Side) -> None:
        for event in this.session.events():
            this.received.append(event)
            if isinstance(event, ev.EnvelopesReceived):
                this.envelopes.add(event.envelopes)


@dataclasses.dataclass
class Node:
    """A device running real LAN links: its server, its links and every event they raised."""

    side: Side
    bandwidth: LanBandwidth
    links: list[LanLink] = dataclasses.field(default_factory=list)
    events: list[ev.Event] = dataclasses.field(default_factory=list)
    server: LanServer | None = None
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    timings: LinkTimings = dataclasses.field(default_factory=LinkTimings)

    @property
    def local(self) -> LocalDevice:
        return local_device(self.side.device)

    def _link(self, connection: LanConnection) -> LanLink:
        session = LanSession(
            peer=connection.peer.certificate,
            authorizer=self.side.authorizer,
            envelopes=self.side.envelopes,
            chunks=self.side.chunks,
            verify_chunk=verify_chunk,
        )

        def on_event(event: ev.Event) -> None:
            self.events.append(event)
            if isinstance(event, ev.EnvelopesReceived):
                self.side.envelopes.add(event.envelopes)

        link = LanLink(
            connection,
            session,
            clock=SystemClock(),
            bandwidth=self.bandwidth,
            on_event=on_event,
            timings=self.timings,
        )
        self.links.append(link)
        return link

    async def serve(self, host: str, port: int = 0, limits: LanLimits = LAN_LIMITS) -> int:
        async def handle(connection: LanConnection) -> None:
            await self._link(connection).run()

        self.server = LanServer(
            device=self.local,
            authorize=self.side.authorizer.admits_any,
            handler=handle,
            limits=limits,
        )
        await self.server.start(host, port)
        return self.server.port

    async def dial(self, host: str, port: int, limits: LanLimits = LAN_LIMITS) -> LanLink:
        connection = await connect(
            host, port, device=self.local, authorize=self.side.authorizer.admits_any, limits=limits
        )
        link = self._link(connection)
        self.tasks.append(asyncio.create_task(link.run()))
        return link

    async def close(self) -> None:
        for link in self.links:
            await link.close()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)
        if self.server is not None:
            await self.server.close()


def node(side: Side, bandwidth: BandwidthLimits | None = None) -> Node:
    return Node(side, LanBandwidth(SystemClock(), bandwidth or BandwidthLimits()))


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (polling) until ``condition()`` holds; fail the test after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - conditions span several objects
            await asyncio.sleep(0.01)
