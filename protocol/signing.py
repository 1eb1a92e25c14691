"""Domain separation: every signature and every protocol hash names what it is for.

A signature covers ``b"driftsync/v1/" + purpose + b"\\x00" + message`` where ``message`` is the
canonical encoding of the signed record without its signature. Purposes are a closed set, so an auth
message can never pass as an envelope, a certificate or a chain entry: the bytes signed differ in
their prefix. Hashes of records (envelope ids, chain links, key hashes) are SHA-256 over the same
kind of prefix.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from enum import StrEnum

from nacl.exceptions import BadSignatureError
from nacl.hash import blake2b
from nacl.signing import SigningKey, VerifyKey

from protocol.errors import BadSignature, LocalProtocolError

RandomBytes = Callable[[int], bytes]
"""Where every random byte comes from; ``os.urandom`` in production, seeded in simulations."""

default_random: RandomBytes = os.urandom

DOMAIN = b"driftsync/v1/"
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
HASH_BYTES = 32


class Purpose(StrEnum):
    """What a signature or a hash is for; the string is part of the signed bytes."""

    AUTH = "auth"
    ENVELOPE = "envelope"
    DEVICE_CERTIFICATE = "device-certificate"
    DEVICE_REVOCATION = "device-revocation"
    CHAIN_ENTRY = "chain-entry"
    RECOVERY_PROOF = "recovery-proof"
    # Hash-only purposes.
    ENVELOPE_HASH = "envelope-hash"
    CHAIN_ENTRY_HASH = "chain-entry-hash"
    EPOCH_KEY_HASH = "epoch-key-hash"
    DEVICE_ID = "device-id"
    USER_ID = "user-id"


def domain_message(purpose: Purpose, message: bytes) -> bytes:
    """The exact bytes a signature or a hash for ``purpose`` covers."""
    return DOMAIN + purpose.value.encode("ascii") + b"\x00" + message


def sign(key: SigningKey, purpose: Purpose, message: bytes) -> bytes:
    """A 64-byte Ed25519 signature over ``message`` for ``purpose`` (deterministic)."""
    return key.sign(domain_message(purpose, message)).signature


VERIFIED_MEMO_ENTRIES = 8192
_verified: dict[bytes, None] = {}
"""Hashes of (key, signature, signed bytes) that verified, oldest first. The same envelope is
verified again and again (it reaches a device from the relay and from LAN peers, a relay process
checks certificates it has seen): a hash is far cheaper than an Ed25519 verification. Only
successes are kept, and the hash covers the exact bytes signed, so nothing unverified passes."""


def verify(public_key: bytes, purpose: Purpose, message: bytes, signature: bytes) -> None:
    """Raise ``BadSignature`` unless ``signature`` is ``public_key``'s over ``message``."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        raise BadSignature(f"{purpose.value} signature or key has the wrong size")
    signed = domain_message(purpose, message)
    memo = hashlib.sha256(public_key + signature + signed).digest()
    if memo in _verified:
        return
    try:
        VerifyKey(public_key).verify(signed, signature)
    except (BadSignatureError, ValueError) as exc:
        raise BadSignature(f"{purpose.value} signature does not verify") from exc
    if len(_verified) >= VERIFIED_MEMO_ENTRIES:
        del _verified[next(iter(_verified))]
    _verified[memo] = None


def digest(purpose: Purpose, message: bytes) -> bytes:
    """SHA-256 over the domain-separated ``message``: 32 bytes."""
    return hashlib.sha256(domain_message(purpose, message)).digest()


def take_random(random_bytes: RandomBytes, size: int) -> bytes:
    """``size`` bytes from an injected source, refusing a source that returns the wrong amount."""
    data = random_bytes(size)
    if not isinstance(data, bytes) or len(data) != size:
        raise LocalProtocolError(f"random source returned {len(data)} bytes, {size} requested")
    return data


class _RawEncoder:
    """PyNaCl encoder that leaves bytes as they are."""

    @staticmethod
    def encode(data: bytes) -> bytes:
        return data

    @staticmethod
    def decode(data: bytes) -> bytes:
        return data


def keyed_hash(data: bytes, *, person: bytes, size: int = 32, key: bytes = b"") -> bytes:
    """BLAKE2b of ``data`` with a 16-byte personalization (the domain) and an optional key."""
    return blake2b(data, digest_size=size, key=key, person=person, encoder=_RawEncoder)
