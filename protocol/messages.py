"""Every message the relay and LAN peers speak, with one strict decoder.

On the wire a message is a msgpack map: ``type`` (the message's name) first, then ``v`` (the
protocol version the sender speaks for this message), then the message's fields in the order
listed here. ``decode_message`` refuses unknown types and everything the codec refuses. Signed
statements (certificates, chain entries, envelopes, auth responses, key wraps) travel nested as
the same canonical maps they are signed as, so their bytes, signatures and hashes are unchanged.

Peers negotiate: each ``Hello`` says the oldest and newest version it speaks; both use the highest
version both speak (``negotiate_version``), or the connection ends with ``unsupported_version``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self

from protocol.auth import AuthChallenge, AuthResponse
from protocol.chain import SHARE_ID_BYTES, ChainEntry
from protocol.codec import (
    MAX_MESSAGE_BYTES,
    Bin,
    Flag,
    IntOrText,
    Maybe,
    Nested,
    OneOf,
    Pair,
    Record,
    Seq,
    Text,
    UInt,
    pack,
    unpack,
)
from protocol.envelope import Envelope
from protocol.errors import (
    DecodeError,
    EncodeError,
    ProtocolError,
    UnsupportedVersion,
    error_from_wire,
)
from protocol.keys import DeviceCertificate, DeviceRevocation
from protocol.keyschedule import EpochKeyWrap
from protocol.linking import LinkGrant, LinkRequest
from protocol.recovery import RecoveryBlob
from protocol.signing import HASH_BYTES
from protocol.vv import VV_KIND, VersionVector

PROTOCOL_VERSION = 1
MIN_PROTOCOL_VERSION = 1
MAX_BLOCK_BYTES = 16 * 1024 * 1024
MAX_IDS_PER_MESSAGE = 4096
MAX_ITEMS_PER_BATCH = 1024

_SHARE = Bin.exact(SHARE_ID_BYTES)
_HASH = Bin.exact(HASH_BYTES)
_VERSION = UInt(max_value=255, min_value=1)
_BLOCK_IDS = Seq(_HASH, MAX_IDS_PER_MESSAGE)


class Message(Record):
    """Base of wire messages: ``TYPE`` names it; ``v`` is the version it is written in."""

    TYPE: ClassVar[str] = ""
    MAX_BYTES: ClassVar[int] = MAX_MESSAGE_BYTES

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.TYPE, **super().to_wire()}

    def encode(self) -> bytes:
        return encode_message(self)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        message = decode_message(data, max_bytes=cls.MAX_BYTES)
        if not isinstance(message, cls):
            raise DecodeError("unknown_type", f"expected a {cls.TYPE} message, got {message.TYPE}")
        return message


_REGISTRY: dict[str, type[Message]] = {}


def _message(cls: type[Message]) -> type[Message]:
    if not cls.TYPE or cls.TYPE in _REGISTRY or cls.SCHEMA[0][0] != "v":
        raise TypeError(f"bad message declaration {cls.__name__}")
    _REGISTRY[cls.TYPE] = cls
    return cls


def message_types() -> dict[str, type[Message]]:
    """Every message type by its wire name."""
    return dict(_REGISTRY)


def encode_message(message: Message) -> bytes:
    data = pack(message.to_wire())
    if len(data) > message.MAX_BYTES:
        raise EncodeError(
            f"{message.TYPE} message of {len(data)} bytes exceeds {message.MAX_BYTES} bytes",
            reason="too_large",
        )
    return data


def decode_message(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """The message in ``data``, or ``DecodeError`` with the rule it broke."""
    data = bytes(data)
    obj = unpack(data, max_bytes=max_bytes)
    if not isinstance(obj, dict):
        raise DecodeError("wrong_type", f"a message is a map, got {type(obj).__name__}")
    kind = obj.pop("type", None)
    if not isinstance(kind, str):
        raise DecodeError("missing_field", "a message starts with its type")
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise DecodeError("unknown_type", f"unknown message type {kind[:40]!r}")
    message = cls.from_wire(obj, kind)
    # Every field passed its check just now: re-encoding needs no second round of checks.
    if pack({"type": kind, **message.unchecked_wire()}) != data:
        raise DecodeError("not_canonical", f"{kind}: not in canonical form")
    return message


def negotiate_version(
    remote_min: int,
    remote_max: int,
    local_min: int = MIN_PROTOCOL_VERSION,
    local_max: int = PROTOCOL_VERSION,
) -> int:
    """The highest version both sides speak; ``UnsupportedVersion`` if there is none."""
    version = min(remote_max, local_max)
    if version < max(remote_min, local_min) or remote_min > remote_max:
        raise UnsupportedVersion(
            f"the peer speaks versions {remote_min}..{remote_max}, "
            f"we speak {local_min}..{local_max}; update the older side",
            remote_min=remote_min,
            remote_max=remote_max,
        )
    return version


# --- session -------------------------------------------------------------------------------


@_message
@dataclasses.dataclass(frozen=True)
class Hello(Message):
    """First message on every connection: versions spoken and the software speaking them."""

    TYPE = "hello"
    min_version: int
    max_version: int
    agent: str
    v: int = PROTOCOL_VERSION
    SCHEMA = (
        ("v", _VERSION),
        ("min_version", _VERSION),
        ("max_version", _VERSION),
        ("agent", Text(64)),
    )


@_message
@dataclasses.dataclass(frozen=True)
class Welcome(Message):
    """Answer to ``hello``: the version both will speak."""

    TYPE = "welcome"
    version: int
    agent: str
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("version", _VERSION), ("agent", Text(64)))


@_message
@dataclasses.dataclass(frozen=True)
class AuthChallengeMsg(Message):
    """The relay's login challenge (relay → device)."""

    TYPE = "auth_challenge"
    challenge: AuthChallenge
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("challenge", Nested(AuthChallenge)))


@_message
@dataclasses.dataclass(frozen=True)
class AuthResponseMsg(Message):
    """The device's signed login (device → relay)."""

    TYPE = "auth_response"
    response: AuthResponse
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("response", Nested(AuthResponse)))


@_message
@dataclasses.dataclass(frozen=True)
class AuthOk(Message):
    """Login accepted: a bearer token for later requests and when it expires."""

    TYPE = "auth_ok"
    token: str
    expires_ms: int
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("token", Text(4096, min_len=1)), ("expires_ms", UInt()))


@_message
@dataclasses.dataclass(frozen=True)
class ErrorMsg(Message):
    """A refusal: the error's wire ``code``, a sentence for people, and typed details."""

    TYPE = "error"
    code: str
    message: str
    details: tuple[tuple[str, int | str], ...] = ()
    v: int = PROTOCOL_VERSION
    SCHEMA = (
        ("v", _VERSION),
        ("code", Text(64, min_len=1)),
        ("message", Text(1024)),
        ("details", Seq(Pair(Text(32, min_len=1), IntOrText(256)), 16)),
    )

    @classmethod
    def from_error(cls, error: ProtocolError) -> ErrorMsg:
        details = tuple(
            (key[:32], value if type(value) is int else str(value)[:256])
            for key, value in sorted(error.details.items())
            if isinstance(value, int | str) and not isinstance(value, bool)
        )[:16]
        return cls(code=error.code, message=error.message[:1024], details=details)

    def to_error(self) -> ProtocolError:
        return error_from_wire(self.code, self.message, dict(self.details))


@_message
@dataclasses.dataclass(frozen=True)
class Heartbeat(Message):
    """Keep-alive; carries the sender's clock and the latest sequence of each subscribed share."""

    TYPE = "heartbeat"
    time_ms: int
    latest: tuple[tuple[bytes, int], ...] = ()
    v: int = PROTOCOL_VERSION
    SCHEMA = (
        ("v", _VERSION),
        ("time_ms", UInt()),
        ("latest", Seq(Pair(_SHARE, UInt()), MAX_IDS_PER_MESSAGE)),
    )


# --- identity ------------------------------------------------------------------------------


@_message
@dataclasses.dataclass(frozen=True)
class DeviceCertificates(Message):
    """Certificates of devices whose envelopes or chain entries the receiver must check."""

    TYPE = "device_certificates"
    certificates: tuple[DeviceCertificate, ...]
    v: int = PROTOCOL_VERSION
    SCHEMA = (
        ("v", _VERSION),
        ("certificates", Seq(Nested(DeviceCertificate), MAX_ITEMS_PER_BATCH)),
    )


@_message
@dataclasses.dataclass(frozen=True)
class RevokeDevice(Message):
    """A user's revocation of one of its devices (device → relay)."""

    TYPE = "revoke_device"
    revocation: DeviceRevocation
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("revocation", Nested(DeviceRevocation)))


@_message
@dataclasses.dataclass(frozen=True)
class LinkRequestMsg(Message):
    """A new device asks to be linked (via the relay's rendezvous)."""

    TYPE = "link_request"
    request: LinkRequest
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("request", Nested(LinkRequest)))


@_message
@dataclasses.dataclass(frozen=True)
class LinkGrantMsg(Message):
    """The existing device's certificate for the new one (via the relay's rendezvous)."""

    TYPE = "link_grant"
    grant: LinkGrant
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("grant", Nested(LinkGrant)))


@_message
@dataclasses.dataclass(frozen=True)
class RecoveryBlobMsg(Message):
    """Store (device → relay) or return (relay → device) a user's wrapped user key."""

    TYPE = "recovery_blob"
    blob: RecoveryBlob
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("blob", Nested(RecoveryBlob)))


# --- membership chain and keys -----------------------------------------------------------------


@_message
@dataclasses.dataclass(frozen=True)
class ChainHead(Message):
    """Where a share's chain ends, as the sender knows it (exchanged first between LAN peers)."""

    TYPE = "chain_head"
    share: bytes
    height: int
    head_hash: bytes
    v: int = PROTOCOL_VERSION
    SCHEMA = (
        ("v", _VERSION),
        ("share", _SHARE),
        ("height", UInt(max_value=2**32 - 1)),
        ("head_hash", _HASH),
    )


@_message
@dataclasses.dataclass(frozen=True)
class ChainGet(Message):
    """Ask for a share's chain entries from ``since_height`` on."""

    TYPE = "chain_get"
    share: bytes
    since_height: int = 0
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("share", _SHARE), ("since_height", UInt(max_value=2**32 - 1)))


@_message
@dataclasses.dataclass(frozen=True)
class ChainEntries(Message):
    """Chain entries in height order (an answer to ``chain_get``, or a push of new entries)."""

    TYPE = "chain_entries"
    share: bytes
    entries: tuple[ChainEntry, ...]
    v: int = PROTOCOL_VERSION
    SCHEMA = (
        ("v", _VERSION),
        ("share", _SHARE),
        ("entries", Seq(Nested(ChainEntry), MAX_ITEMS_PER_BATCH)),
    )


@_message
@dataclasses.dataclass(frozen=True)
class ChainAppend(Message):
    """Ask the relay to append one entry at the head (it accepts only the next height)."""

    TYPE = "chain_append"
    entry: ChainEntry
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("entry", Nested(ChainEntry)))


@_message
@dataclasses.dataclass(frozen=True)
class KeyWraps(Message):
    """Epoch key wraps, one per recipient device (owner → relay → members)."""

    TYPE = "key_wraps"
    wraps: tuple[EpochKeyWrap, ...]
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("wraps", Seq(Nested(EpochKeyWrap), 256)))


# --- blocks -----------------------------------------------------------------------------------


@_message
@dataclasses.dataclass(frozen=True)
class HaveBlocks(Message):
    """Ask which of these blocks the receiver has."""

    TYPE = "have_blocks"
    share: bytes
    block_ids: tuple[bytes, ...]
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("share", _SHARE), ("block_ids", _BLOCK_IDS))


@_message
@dataclasses.dataclass(frozen=True)
class HaveBlocksReply(Message):
    """Which of the asked blocks the sender has, and which it lacks."""

    TYPE = "have_blocks_reply"
    share: bytes
    present: tuple[bytes, ...]
    missing: tuple[bytes, ...]
    v: int = PROTOCOL_VERSION
    SCHEMA = (
        ("v", _VERSION),
        ("share", _SHARE),
        ("present", _BLOCK_IDS),
        ("missing", _BLOCK_IDS),
    )


@_message
@dataclasses.dataclass(frozen=True)
class WantBlocks(Message):
    """Send me these blocks (answered with one ``block_data`` each, or an error)."""

    TYPE = "want_blocks"
    share: bytes
    block_ids: tuple[bytes, ...]
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("share", _SHARE), ("block_ids", _BLOCK_IDS))


@_message
@dataclasses.dataclass(frozen=True)
class BlockData(Message):
    """One sealed block; the receiver checks ``block_id`` = SHA-256(data)."""

    TYPE = "block_data"
    share: bytes
    block_id: bytes
    data: bytes
    v: int = PROTOCOL_VERSION
    SCHEMA = (
        ("v", _VERSION),
        ("share", _SHARE),
        ("block_id", _HASH),
        ("data", Bin(max_len=MAX_BLOCK_BYTES)),
    )


# --- envelopes and notifications --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SequencedEnvelope(Record):
    """An envelope with the sequence number the relay gave it in its share's log, and the
    relay's clock when it appended it (nil where no relay ordered it: between LAN peers)."""

    seq: int
    envelope: Envelope
    appended_ms: int | None = None
    SCHEMA = (
        ("seq", UInt(min_value=1)),
        ("envelope", Nested(Envelope)),
        ("appended_ms", Maybe(UInt())),
    )


@_message
@dataclasses.dataclass(frozen=True)
class PushEnvelopes(Message):
    """Envelopes for the receiver to verify and store (device → relay, peer → peer)."""

    TYPE = "push_envelopes"
    envelopes: tuple[Envelope, ...]
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("envelopes", Seq(Nested(Envelope), MAX_ITEMS_PER_BATCH)))


@_message
@dataclasses.dataclass(frozen=True)
class EnvelopeAck(Message):
    """The relay stored (or already had) this device's envelope at ``seq``."""

    TYPE = "envelope_ack"
    share: bytes
    device: bytes
    counter: int
    seq: int
    v: int = PROTOCOL_VERSION
    SCHEMA = (
        ("v", _VERSION),
        ("share", _SHARE),
        ("device", _HASH),
        ("counter", UInt(min_value=1)),
        ("seq", UInt(min_value=1)),
    )


@_message
@dataclasses.dataclass(frozen=True)
class GetEnvelopes(Message):
    """Catch-up: what the sender lacks, by relay cursor (``since_seq``) or by version vector."""

    TYPE = "get_envelopes"
    share: bytes
    since_seq: int | None = None
    have: VersionVector | None = None
    limit: int = MAX_ITEMS_PER_BATCH
    v: int = PROTOCOL_VERSION
    SCHEMA = (
        ("v", _VERSION),
        ("share", _SHARE),
        ("since_seq", Maybe(UInt())),
        ("have", Maybe(VV_KIND)),
        ("limit", UInt(max_value=MAX_ITEMS_PER_BATCH, min_value=1)),
    )


@_message
@dataclasses.dataclass(frozen=True)
class Envelopes(Message):
    """Envelopes in log order; ``more`` says another request would return more."""

    TYPE = "envelopes"
    share: bytes
    items: tuple[SequencedEnvelope, ...]
    more: bool
    v: int = PROTOCOL_VERSION
    SCHEMA = (
        ("v", _VERSION),
        ("share", _SHARE),
        ("items", Seq(Nested(SequencedEnvelope), MAX_ITEMS_PER_BATCH)),
        ("more", Flag()),
    )


@_message
@dataclasses.dataclass(frozen=True)
class Subscribe(Message):
    """Ask to be notified when these shares change."""

    TYPE = "subscribe"
    shares: tuple[bytes, ...]
    v: int = PROTOCOL_VERSION
    SCHEMA = (("v", _VERSION), ("shares", Seq(_SHARE, MAX_IDS_PER_MESSAGE)))


@_message
@dataclasses.dataclass(frozen=True)
class Notify(Message):
    """A share's log grew (to ``seq``), or its chain did (``what`` says which)."""

    TYPE = "notify"
    share: bytes
    seq: int
    what: str = "envelopes"
    v: int = PROTOCOL_VERSION
    SCHEMA = (
        ("v", _VERSION),
        ("share", _SHARE),
        ("seq", UInt()),
        ("what", OneOf(("envelopes", "chain", "keys"))),
    )
