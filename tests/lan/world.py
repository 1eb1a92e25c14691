"""A small world for LAN session tests: users, devices, a share's chain, envelopes, chunks.

Everything is real (certificates, chain entries, sealed envelopes); only the engine is replaced
by in-memory stores that satisfy the session's ``EnvelopeSource`` and ``ChunkSource``. Chunk ids
are SHA-256 of the plaintext here: the session takes the verification as an injected callable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Iterable

from peer.lan import events as ev
from peer.lan.authorizer import LanAuthorizer
from peer.lan.session import LanSession, SessionLimits
from peer.lan.tls import TlsIdentity
from peer.lan.transport import LocalDevice
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

NOW_MS = 1_764_000_000_000
METADATA_KEY = bytes(range(32))


def chunk_id_of(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def verify_chunk(share: bytes, chunk_id: bytes, data: bytes) -> bool:
    return chunk_id_of(data) == chunk_id


@dataclasses.dataclass
class World:
    """Owner (laptop), editor (phone, and a tablet it revoked), a removed user, an outsider."""

    rand: random.Random
    owner: UserIdentity
    laptop: CertifiedDevice
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

        laptop, phone, tablet = certified(owner, "laptop"), certified(editor, "phone"), None
        tablet = certified(editor, "tablet")
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
        return [
            envelope
            for (device, counter), envelope in sorted(self.stored.items())
            if envelope.header.share == share and counter > vector.get(device)
        ]


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
