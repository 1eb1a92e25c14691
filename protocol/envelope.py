"""Signed envelopes: one encrypted CRDT update of one device, as it travels everywhere.

An envelope is ``{header, payload, sig}``. The header is in the clear: protocol version, share id,
key epoch, chain height it was written under, device id, device counter (1, 2, 3 … without gaps),
hash of the device's previous envelope (zeros for counter 1), the version vector the device had
seen, every block id the update references (sorted), and the AEAD nonce. The payload is the update
encrypted with XChaCha20-Poly1305 under the epoch's ``metadata_key``, with the canonical header
bytes as associated data. The device signs the canonical envelope with ``sig`` set to 64 zero
bytes, for purpose ``envelope``.

The checks are split so that a relay, which has no keys, runs all but decryption:
``verify_envelope_signature`` (version, sizes, signature; needs only the device public key),
``check_envelope_authority`` (the signer's role, epoch and cutoffs by the chain at the named
height), ``check_continuity`` (counter and hash link after the device's last envelope), and
``same_position`` (an identical resend, or a fork). ``open_envelope`` decrypts.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from typing import ClassVar, Self

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from protocol.chain import SHARE_ID_BYTES, WRITERS, ZERO_HASH, MembershipChain
from protocol.codec import Bin, Nested, Record, Seq, UInt
from protocol.errors import (
    BadCertificate,
    BadKey,
    BrokenHashChain,
    CounterGap,
    CounterReplay,
    Forbidden,
    Fork,
    LocalProtocolError,
    UnsupportedVersion,
    WrongEpoch,
    WrongShare,
)
from protocol.keys import DeviceCertificate, DeviceIdentity, device_id_of
from protocol.signing import (
    HASH_BYTES,
    SIGNATURE_BYTES,
    Purpose,
    RandomBytes,
    default_random,
    digest,
    sign,
    take_random,
    verify,
)
from protocol.vv import VV_KIND, VersionVector

ENVELOPE_VERSION = 1
NONCE_BYTES = 24
KEY_BYTES = 32
AEAD_TAG_BYTES = 16
MAX_UPDATE_BYTES = 8 * 1024 * 1024
MAX_BLOCK_REFS = 16384


class _KeepsEncoding(Record):
    """A record encoded (and checked) once: it is immutable, and encoded again and again."""

    def encode(self) -> bytes:
        canonical: bytes | None = self.__dict__.get("_canonical")
        if canonical is None:
            canonical = super().encode()
            self.__dict__["_canonical"] = canonical
        return canonical


@dataclasses.dataclass(frozen=True)
class EnvelopeHeader(_KeepsEncoding):
    # The AEAD's associated data: sealing and every opening encode it again (decoded envelopes
    # are shared through the decode memo, so each header is checked and packed once).
    v: int
    share: bytes
    epoch: int
    height: int
    device: bytes
    counter: int
    prev: bytes
    seen: VersionVector
    blocks: tuple[bytes, ...]
    nonce: bytes

    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("share", Bin.exact(SHARE_ID_BYTES)),
        ("epoch", UInt(max_value=2**32 - 1)),
        ("height", UInt(max_value=2**32 - 1)),
        ("device", Bin.exact(HASH_BYTES)),
        ("counter", UInt(min_value=1)),
        ("prev", Bin.exact(HASH_BYTES)),
        ("seen", VV_KIND),
        ("blocks", Seq(Bin.exact(HASH_BYTES), MAX_BLOCK_REFS, ordered=True)),
        ("nonce", Bin.exact(NONCE_BYTES)),
    )


@dataclasses.dataclass(frozen=True)
class Envelope(_KeepsEncoding):
    # Encoded for its hash, its signature check, the outbox and the relay.
    header: EnvelopeHeader
    payload: bytes
    sig: bytes

    DECODE_MEMO: ClassVar[bool] = True
    SCHEMA = (
        ("header", Nested(EnvelopeHeader)),
        ("payload", Bin(max_len=MAX_UPDATE_BYTES + AEAD_TAG_BYTES, min_len=AEAD_TAG_BYTES)),
        ("sig", Bin.exact(SIGNATURE_BYTES)),
    )
    MAX_BYTES: ClassVar[int] = MAX_UPDATE_BYTES + 1024 * 1024

    @classmethod
    def decode(cls, data: bytes) -> Self:
        envelope = super().decode(data)
        # Decoding proved ``data`` is the canonical encoding; the hash and the signature check
        # need exactly these bytes, and encoding them again costs more than the check itself.
        envelope.__dict__["_canonical"] = bytes(data)
        return envelope


    def signed_bytes(self) -> bytes:
        # ``sig`` is the last field and a fixed-size bin, so the encoding with a zero signature
        # is the encoding with its last bytes zeroed.
        return self.encode()[:-SIGNATURE_BYTES] + bytes(SIGNATURE_BYTES)

    @functools.cached_property
    def envelope_hash(self) -> bytes:
        """The envelope's id: the next envelope of the device names it as ``prev``."""
        return digest(Purpose.ENVELOPE_HASH, self.encode())

    @property
    def tip(self) -> EnvelopeTip:
        return EnvelopeTip(self.header.counter, self.envelope_hash)


@dataclasses.dataclass(frozen=True)
class EnvelopeTip:
    """What a verifier keeps of a device's last accepted envelope."""

    counter: int
    envelope_hash: bytes


def seal_envelope(
    device: DeviceIdentity,
    *,
    share: bytes,
    epoch: int,
    height: int,
    counter: int,
    prev: bytes,
    seen: Mapping[bytes, int],
    blocks: Iterable[bytes],
    update: bytes,
    metadata_key: bytes,
    random_bytes: RandomBytes = default_random,
) -> Envelope:
    """Encrypt ``update`` and sign the envelope (``prev`` = previous envelope hash or zeros)."""
    if len(metadata_key) != KEY_BYTES:
        raise LocalProtocolError("a metadata key is 32 bytes")
    if len(update) > MAX_UPDATE_BYTES:
        raise LocalProtocolError(
            f"update of {len(update)} bytes exceeds {MAX_UPDATE_BYTES}; split it"
        )
    if (counter == 1) != (prev == ZERO_HASH):
        raise LocalProtocolError("counter 1, and only it, has no previous envelope")
    header = EnvelopeHeader(
        v=ENVELOPE_VERSION,
        share=share,
        epoch=epoch,
        height=height,
        device=device.device_id,
        counter=counter,
        prev=prev,
        seen=VersionVector(seen),
        blocks=tuple(sorted(set(blocks))),
        nonce=take_random(random_bytes, NONCE_BYTES),
    )
    payload = crypto_aead_xchacha20poly1305_ietf_encrypt(
        update, header.encode(), header.nonce, metadata_key
    )
    unsigned = Envelope(header=header, payload=payload, sig=bytes(SIGNATURE_BYTES))
    sig = sign(device.signing_key, Purpose.ENVELOPE, unsigned.signed_bytes())
    signed = dataclasses.replace(unsigned, sig=sig)
    if len(sig) == SIGNATURE_BYTES:
        # ``sig`` is the last field, a fixed-size bin: the checked encoding of the unsigned
        # envelope with its last bytes replaced is the signed one's (no second round of checks).
        signed.__dict__["_canonical"] = unsigned.encode()[:-SIGNATURE_BYTES] + sig
    return signed


def verify_envelope_signature(envelope: Envelope, device_public_key: bytes) -> None:
    """Version, and the signature of the device whose id the header names (no keys needed)."""
    if envelope.header.v != ENVELOPE_VERSION:
        raise UnsupportedVersion(f"envelope version {envelope.header.v} is not supported")
    if device_id_of(device_public_key) != envelope.header.device:
        raise BadCertificate("the envelope names another device than this public key's")
    verify(device_public_key, Purpose.ENVELOPE, envelope.signed_bytes(), envelope.sig)


def check_envelope_authority(
    envelope: Envelope, certificate: DeviceCertificate, chain: MembershipChain
) -> None:
    """May the signer write this envelope, by the chain at the height it names?

    Raises ``WrongShare``, ``UnknownHeight`` (fetch the chain), ``BadCertificate``,
    ``Forbidden`` (not an owner or editor then), ``WrongEpoch``, ``Revoked`` or ``PastCutoff``.
    """
    header = envelope.header
    if header.share != chain.share_id:
        raise WrongShare("envelope is for another share")
    if certificate.device_id != header.device:
        raise BadCertificate("certificate is for another device than the envelope's")
    role = chain.role_at(certificate.user_id, header.height)
    user_key = chain.user_key(certificate.user_id)
    if role not in WRITERS or user_key is None:
        raise Forbidden(
            f"the device's user is {'not a member' if role is None else role.value} "
            f"at chain height {header.height} and may not write"
        )
    certificate.verify(user_key)
    expected_epoch = chain.epoch_at(header.height)
    if header.epoch != expected_epoch:
        raise WrongEpoch(
            f"envelope uses key epoch {header.epoch}; chain height {header.height} "
            f"requires epoch {expected_epoch}"
        )
    chain.check_device_counter(certificate.user_id, header.device, header.counter, header.height)


def check_continuity(envelope: Envelope, last: EnvelopeTip | None) -> None:
    """Does this envelope directly follow the device's last accepted one?

    ``last`` is None when nothing of the device was accepted yet. Raises ``CounterReplay``
    (counter already taken: compare with ``same_position``), ``CounterGap`` or ``BrokenHashChain``.
    """
    header = envelope.header
    have = 0 if last is None else last.counter
    if header.counter <= have:
        raise CounterReplay(
            f"counter {header.counter} of this device is already taken (have {have})", have=have
        )
    if header.counter > have + 1:
        raise CounterGap(
            f"counter {header.counter} skips ahead; the next counter is {have + 1}", have=have
        )
    expected_prev = ZERO_HASH if last is None else last.envelope_hash
    if header.prev != expected_prev:
        raise BrokenHashChain(
            f"envelope {header.counter} does not name the hash of the device's envelope {have}"
        )


def same_position(envelope: Envelope, stored: Envelope) -> bool:
    """True for an identical resend of ``stored``; ``Fork`` if it differs at the same counter."""
    if (envelope.header.device, envelope.header.counter) != (
        stored.header.device,
        stored.header.counter,
    ):
        raise LocalProtocolError("compare envelopes of the same device and counter")
    if envelope.envelope_hash != stored.envelope_hash:
        raise Fork(
            f"a different envelope already holds counter {envelope.header.counter}",
            counter=envelope.header.counter,
        )
    return True


def verify_envelope(
    envelope: Envelope,
    certificate: DeviceCertificate,
    chain: MembershipChain,
    last: EnvelopeTip | None,
) -> None:
    """Every check a replica makes before decrypting: signature, authority and continuity."""
    verify_envelope_signature(envelope, certificate.device_key)
    check_envelope_authority(envelope, certificate, chain)
    check_continuity(envelope, last)


def open_envelope(envelope: Envelope, metadata_key: bytes) -> bytes:
    """Decrypt the update; run the verifications first. ``BadKey`` if it does not open."""
    try:
        return crypto_aead_xchacha20poly1305_ietf_decrypt(
            envelope.payload, envelope.header.encode(), envelope.header.nonce, metadata_key
        )
    except (CryptoError, ValueError, TypeError) as exc:
        raise BadKey("envelope payload does not open with this epoch's metadata key") from exc
