"""Recovery code: 160 random bits, printable and checked, that wrap the user key.

The relay keeps the ``RecoveryBlob`` (it cannot open it); a user who lost every device types the
code on a new one to get their user key back. The code has full key strength, so the wrapping key
is a plain keyed-hash derivation; no password stretching is needed.

Wrapping: ``k = BLAKE2b-256(code bytes, person "driftsync/v1/rec")``; the blob is the user key seed
encrypted with XChaCha20-Poly1305 under ``k``, random nonce, associated data
``"driftsync/v1/recovery" 0x00 ‖ user id``.

Getting the blob back without any device: the code also derives an Ed25519 **recovery key**
(seed ``BLAKE2b-256(code bytes, person "driftsync/v1/rsk")``, independent of ``k``), whose public
half is registered with the account next to the blob. A ``RecoveryProof`` signs (purpose
``recovery-proof``) the relay's origin and a single-use server nonce from its login challenge
with that key: the relay learns that the caller holds the code, never the code, and a captured
proof is good neither twice nor at another relay.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey

from protocol import ids
from protocol.codec import Bin, Record, Text, UInt
from protocol.errors import AuthFailed, BadCode, UnsupportedVersion
from protocol.keys import SEED_BYTES, UserIdentity
from protocol.signing import (
    DOMAIN,
    HASH_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Purpose,
    RandomBytes,
    default_random,
    keyed_hash,
    sign,
    take_random,
    verify,
)

RECOVERY_CODE_BYTES = 20
RECOVERY_CHUNK = 8
RECOVERY_GROUP = 6
NONCE_BYTES = 24
RECOVERY_VERSION = 1
_PERSON = b"driftsync/v1/rec"
_PROOF_PERSON = b"driftsync/v1/rsk"
PROOF_NONCE_BYTES = 32
MAX_ORIGIN_BYTES = 256
PROOF_WINDOW_MS = 60_000


@dataclasses.dataclass(frozen=True)
class RecoveryBlob(Record):
    v: int
    user_id: bytes
    nonce: bytes
    sealed: bytes

    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("user_id", Bin.exact(HASH_BYTES)),
        ("nonce", Bin.exact(NONCE_BYTES)),
        ("sealed", Bin.exact(SEED_BYTES + 16)),
    )
    MAX_BYTES: ClassVar[int] = 256


def new_recovery_code(random_bytes: RandomBytes = default_random) -> str:
    """A fresh code such as ``ABCDEF-GHIJKL-…`` (36 characters, 160 random bits)."""
    raw = take_random(random_bytes, RECOVERY_CODE_BYTES)
    return ids.encode_code(raw, RECOVERY_CHUNK, RECOVERY_GROUP)


def parse_recovery_code(text: str) -> bytes:
    return ids.decode_code(text, RECOVERY_CODE_BYTES, RECOVERY_CHUNK, "recovery code")


def _wrapping_key(code: str) -> bytes:
    raw = parse_recovery_code(code)
    return keyed_hash(raw, person=_PERSON)


def _associated_data(user_id: bytes) -> bytes:
    return DOMAIN + b"recovery\x00" + user_id


def wrap_user_key(
    user: UserIdentity, code: str, random_bytes: RandomBytes = default_random
) -> RecoveryBlob:
    nonce = take_random(random_bytes, NONCE_BYTES)
    sealed = crypto_aead_xchacha20poly1305_ietf_encrypt(
        user.seed, _associated_data(user.user_id), nonce, _wrapping_key(code)
    )
    return RecoveryBlob(RECOVERY_VERSION, user.user_id, nonce, sealed)


def unwrap_user_key(blob: RecoveryBlob, code: str) -> UserIdentity:
    """The user key inside ``blob``; ``BadCode`` if the code is mistyped or not this blob's."""
    if blob.v != RECOVERY_VERSION:
        raise UnsupportedVersion(f"recovery blob version {blob.v} is not supported")
    try:
        seed = crypto_aead_xchacha20poly1305_ietf_decrypt(
            blob.sealed, _associated_data(blob.user_id), blob.nonce, _wrapping_key(code)
        )
    except CryptoError as exc:
        raise BadCode("this recovery code does not open this account's recovery blob") from exc
    user = UserIdentity(seed)
    if user.user_id != blob.user_id:
        raise BadCode("the recovery blob holds another user's key")
    return user


# -- proving possession of the code without revealing it -----------------------------------------


@dataclasses.dataclass(frozen=True)
class RecoveryProof(Record):
    v: int
    origin: str
    server_nonce: bytes
    verify_key: bytes
    time_ms: int
    sig: bytes

    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("origin", Text(MAX_ORIGIN_BYTES, min_len=1)),
        ("server_nonce", Bin.exact(PROOF_NONCE_BYTES)),
        ("verify_key", Bin.exact(PUBLIC_KEY_BYTES)),
        ("time_ms", UInt()),
        ("sig", Bin.exact(SIGNATURE_BYTES)),
    )
    MAX_BYTES: ClassVar[int] = 512

    def signed_bytes(self) -> bytes:
        return dataclasses.replace(self, sig=bytes(SIGNATURE_BYTES)).encode()


def _recovery_signing_key(code: str) -> SigningKey:
    return SigningKey(keyed_hash(parse_recovery_code(code), person=_PROOF_PERSON))


def recovery_verify_key(code: str) -> bytes:
    """The public key registered with the account: it checks proofs and opens nothing."""
    return bytes(_recovery_signing_key(code).verify_key)


def prove_recovery(code: str, origin: str, server_nonce: bytes, now_ms: int) -> RecoveryProof:
    """Proof for the relay at ``origin`` (the URL dialled) that the caller holds ``code``."""
    key = _recovery_signing_key(code)
    unsigned = RecoveryProof(
        RECOVERY_VERSION,
        origin,
        server_nonce,
        bytes(key.verify_key),
        now_ms,
        bytes(SIGNATURE_BYTES),
    )
    return dataclasses.replace(
        unsigned, sig=sign(key, Purpose.RECOVERY_PROOF, unsigned.signed_bytes())
    )


def verify_recovery_proof(
    proof: RecoveryProof, *, origin: str, now_ms: int, window_ms: int = PROOF_WINDOW_MS
) -> bytes:
    """Check a proof made for this relay; the verify key it proves, to look the account up by.

    The caller must also accept ``proof.server_nonce`` only once and only if it issued it.
    Raises ``UnsupportedVersion``, ``AuthFailed`` (other origin, outside the time window) or
    ``BadSignature``.
    """
    if proof.v != RECOVERY_VERSION:
        raise UnsupportedVersion(f"recovery proof version {proof.v} is not supported")
    if proof.origin != origin:
        raise AuthFailed(f"recovery proof was made for {proof.origin!r}, not {origin!r}")
    if abs(now_ms - proof.time_ms) > window_ms:
        raise AuthFailed(
            f"recovery proof time is {abs(now_ms - proof.time_ms)} ms away from the relay's "
            f"clock (at most {window_ms} ms allowed); check the device clock"
        )
    verify(proof.verify_key, Purpose.RECOVERY_PROOF, proof.signed_bytes(), proof.sig)
    return proof.verify_key
