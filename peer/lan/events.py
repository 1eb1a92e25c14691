"""What a LAN session reports to the engine (frozen, comparable, one meaning each)."""

from __future__ import annotations

import dataclasses

from peer.lan.authorizer import Refusal
from protocol.chain import MembershipChain
from protocol.envelope import Envelope


@dataclasses.dataclass(frozen=True)
class ChainsAgreed:
    """Both sides hold the same chain head for ``share``; envelopes and chunks may flow."""

    share: bytes
    height: int


@dataclasses.dataclass(frozen=True)
class ChainAdopted:
    """We adopted the peer's longer, valid chain for ``share``: the engine stores it."""

    share: bytes
    chain: MembershipChain = dataclasses.field(compare=False)
    height: int


@dataclasses.dataclass(frozen=True)
class ChainForked:
    """The peer's chain for ``share`` differs from ours at ``height``: refused, never adopted."""

    share: bytes
    height: int


@dataclasses.dataclass(frozen=True)
class AdmissionEnded:
    """The peer may no longer talk about ``share`` (removed, revoked…): nothing more is sent."""

    share: bytes
    reason: Refusal


@dataclasses.dataclass(frozen=True)
class EnvelopesReceived:
    """Envelopes from the peer, unverified: the engine validates them as any relay envelope."""

    share: bytes
    envelopes: tuple[Envelope, ...]


@dataclasses.dataclass(frozen=True)
class ChunkReceived:
    """A requested chunk whose bytes verified against its chunk id."""

    share: bytes
    chunk_id: bytes
    data: bytes


@dataclasses.dataclass(frozen=True)
class ChunksUnavailable:
    """Requested chunks this peer will not deliver: fetch them elsewhere."""

    share: bytes
    chunk_ids: tuple[bytes, ...]


@dataclasses.dataclass(frozen=True)
class PeerMisbehaved:
    """The peer broke the protocol (a corrupt chunk, a message out of turn): it is dropped."""

    reason: str


@dataclasses.dataclass(frozen=True)
class SessionClosed:
    """No share is left in common (or every admission ended): the connection can go."""

    reason: str


Event = (
    ChainsAgreed
    | ChainAdopted
    | ChainForked
    | AdmissionEnded
    | EnvelopesReceived
    | ChunkReceived
    | ChunksUnavailable
    | PeerMisbehaved
    | SessionClosed
)
