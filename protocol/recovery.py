"""Recovery code: 160 random bits, printable and checked, that wrap the user key.

The relay keeps the ``RecoveryBlob`` (it cannot open it); a user who lost every device types the
code on a new one to get their user key back. The code has full key strength, so the wrapping key
is a plain keyed-hash derivation; no password stretching is needed.

Wrapping: ``k = BLAKE2b-256(code bytes, person "driftsync/v1/rec")``; the blob is the user key seed
encrypted with XChaCha20-Poly1305 under ``k``, random nonce, associated data
``"driftsync/v1/recovery" 0x00 ‖ user id``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from protocol import ids
from protocol.codec import Bin, Record, UInt
from protocol.errors import BadCode, UnsupportedVersion
from protocol.keys import SEED_BYTES, UserIdentity
from protocol.signing import (
    DOMAIN,
    HASH_BYTES,
    RandomBytes,
    default_random,
    keyed_hash,
    take_random,
)

RECOVERY_CODE_BYTES = 20
RECOVERY_CHUNK = 8
RECOVERY_GROUP = 6
NONCE_BYTES = 24
RECOVERY_VERSION = 1
_PERSON = b"driftsync/v1/rec"


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
