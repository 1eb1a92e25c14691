"""The key schedule of a share: which key protects what, and how members receive keys.

Each key epoch ``n`` has a random 32-byte *epoch key* ``k_n``; the chain records its hash. The
share's stable keys come from ``k_0`` (so they survive rotation, and dedup with them); the per-epoch
keys from ``k_n``. Every derivation is keyed BLAKE2b-256 with personalization ``driftsync/v1/kdf``
over ``label || 0x00 || context``:

=====================  ===========  =================  =====================================
key                    parent       label              context
=====================  ===========  =================  =====================================
``chunking_key``       ``k_0``      ``chunking``       share id
``chunk_id_key``       ``k_0``      ``chunk-id``       share id
``lan_discovery_key``  ``k_0``      ``lan-discovery``  share id
``sealing_key``        ``k_n``      ``sealing``        share id ‖ u64be(n)
``metadata_key``       ``k_n``      ``metadata``       share id ‖ u64be(n)
=====================  ===========  =================  =====================================

``epoch key hash`` = SHA-256(``driftsync/v1/epoch-key-hash`` 0x00 ‖ share id ‖ u64be(n) ‖ ``k_n``).

A member device receives a ``KeyRing`` — every epoch key ``k_0 … k_n`` — in one ``EpochKeyWrap``:
an X25519 authenticated box (crypto_box) from the wrapping owner device to the member device, the
keys checked on arrival against the hashes in the chain. Each new epoch key carries the previous
ones, so one wrap gives a member the whole history.

What removal protects: after a user is removed and the owner starts a new epoch, everything written
under the new epoch (CRDT updates, and blocks sealed with the new sealing key) is unreadable to the
removed user, even with the relay's help: they never receive ``k_{n+1}``. What they already had —
earlier epochs, and the stable chunking and chunk-id keys — stays known: they can still recognise a
chunk whose plaintext they know, and content they had synced they keep.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from protocol.chain import SHARE_ID_BYTES, MembershipChain
from protocol.codec import Bin, Record, Seq, UInt
from protocol.errors import (
    BadKey,
    DecodeError,
    Forbidden,
    LocalProtocolError,
    Revoked,
    UnknownHeight,
    WrongShare,
)
from protocol.keys import (
    DeviceCertificate,
    DeviceIdentity,
    UserIdentity,
    user_id_of,
    x25519_public_of,
)
from protocol.signing import (
    HASH_BYTES,
    Purpose,
    RandomBytes,
    default_random,
    digest,
    keyed_hash,
    take_random,
)

KEY_BYTES = 32
BOX_NONCE_BYTES = 24
KDF_PERSON = b"driftsync/v1/kdf"
# Same construction as peer/lan/tokens.py, so both compute identical tokens.
LAN_PERSON = b"driftsync-lan-v1"
LAN_TOKEN_BYTES = 8
HOUR_MS = 3_600_000
MAX_EPOCHS = 4096
WRAP_VERSION = 1


def kdf(parent: bytes, label: str, context: bytes) -> bytes:
    """A 32-byte sub-key of ``parent`` for ``label`` (see the table in the module docs)."""
    if len(parent) != KEY_BYTES:
        raise LocalProtocolError("key derivation needs a 32-byte parent key")
    return keyed_hash(label.encode("ascii") + b"\x00" + context, person=KDF_PERSON, key=parent)


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def new_epoch_key(random_bytes: RandomBytes = default_random) -> bytes:
    return take_random(random_bytes, KEY_BYTES)


def new_share_id(random_bytes: RandomBytes = default_random) -> bytes:
    return take_random(random_bytes, SHARE_ID_BYTES)


def epoch_key_hash(share_id: bytes, epoch: int, epoch_key: bytes) -> bytes:
    """What the membership chain records for epoch ``epoch``."""
    return digest(Purpose.EPOCH_KEY_HASH, share_id + _u64(epoch) + epoch_key)


@dataclasses.dataclass(frozen=True, repr=False)
class ShareKeys:
    """Keys stable for the share's life (derived from the first epoch key)."""

    share_id: bytes
    chunking_key: bytes
    chunk_id_key: bytes
    lan_discovery_key: bytes

    @classmethod
    def derive(cls, share_id: bytes, first_epoch_key: bytes) -> ShareKeys:
        return cls(
            share_id,
            chunking_key=kdf(first_epoch_key, "chunking", share_id),
            chunk_id_key=kdf(first_epoch_key, "chunk-id", share_id),
            lan_discovery_key=kdf(first_epoch_key, "lan-discovery", share_id),
        )

    def __repr__(self) -> str:
        return f"ShareKeys({self.share_id.hex()})"


@dataclasses.dataclass(frozen=True, repr=False)
class EpochKeys:
    """Keys of one epoch: ``sealing_key`` for blocks, ``metadata_key`` for envelopes."""

    share_id: bytes
    epoch: int
    epoch_key: bytes
    sealing_key: bytes
    metadata_key: bytes

    @classmethod
    def derive(cls, share_id: bytes, epoch: int, epoch_key: bytes) -> EpochKeys:
        context = share_id + _u64(epoch)
        return cls(
            share_id,
            epoch,
            epoch_key,
            sealing_key=kdf(epoch_key, "sealing", context),
            metadata_key=kdf(epoch_key, "metadata", context),
        )

    @property
    def key_hash(self) -> bytes:
        return epoch_key_hash(self.share_id, self.epoch, self.epoch_key)

    def __repr__(self) -> str:
        return f"EpochKeys({self.share_id.hex()}, epoch={self.epoch})"


@dataclasses.dataclass(frozen=True, repr=False)
class KeyRing:
    """Every epoch key of a share so far: ``epoch_keys[n]`` is ``k_n``."""

    share_id: bytes
    epoch_keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.epoch_keys or any(len(k) != KEY_BYTES for k in self.epoch_keys):
            raise LocalProtocolError("a key ring holds one or more 32-byte epoch keys")

    @classmethod
    def create(cls, share_id: bytes, random_bytes: RandomBytes = default_random) -> KeyRing:
        """The key ring of a new share: epoch 0 only."""
        return cls(share_id, (new_epoch_key(random_bytes),))

    @property
    def latest_epoch(self) -> int:
        return len(self.epoch_keys) - 1

    @property
    def share_keys(self) -> ShareKeys:
        return ShareKeys.derive(self.share_id, self.epoch_keys[0])

    def epoch(self, epoch: int | None = None) -> EpochKeys:
        """The keys of ``epoch`` (default: the latest)."""
        epoch = self.latest_epoch if epoch is None else epoch
        if not 0 <= epoch <= self.latest_epoch:
            raise BadKey(f"no key for epoch {epoch}; this device has epochs 0..{self.latest_epoch}")
        return EpochKeys.derive(self.share_id, epoch, self.epoch_keys[epoch])

    def rotated(self, random_bytes: RandomBytes = default_random) -> KeyRing:
        """A ring with one more epoch (record its ``key_hash`` in the chain with a key_epoch)."""
        return KeyRing(self.share_id, (*self.epoch_keys, new_epoch_key(random_bytes)))

    def check_against(self, chain: MembershipChain) -> None:
        """``BadKey`` unless every key's hash is the one the chain recorded for its epoch."""
        if chain.share_id != self.share_id:
            raise WrongShare("these keys are for another share")
        for epoch, key in enumerate(self.epoch_keys):
            try:
                expected = chain.key_hash(epoch)
            except UnknownHeight as exc:
                raise BadKey(f"epoch {epoch} is not in the chain (yet)") from exc
            if epoch_key_hash(self.share_id, epoch, key) != expected:
                raise BadKey(f"the key for epoch {epoch} does not match the hash in the chain")

    def __repr__(self) -> str:
        return f"KeyRing({self.share_id.hex()}, epochs=0..{self.latest_epoch})"


def lan_token(lan_discovery_key: bytes, now_ms: int) -> bytes:
    """The rotating mDNS token of a share for the hour containing ``now_ms``."""
    hour = now_ms // HOUR_MS
    return keyed_hash(_u64(hour), person=LAN_PERSON, size=LAN_TOKEN_BYTES, key=lan_discovery_key)


# --- wrapping for member devices --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KeyBundle(Record):
    """The plaintext inside a wrap: bound to the share and the recipient device."""

    v: int
    share: bytes
    recipient: bytes
    keys: tuple[bytes, ...]

    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("share", Bin.exact(SHARE_ID_BYTES)),
        ("recipient", Bin.exact(HASH_BYTES)),
        ("keys", Seq(Bin.exact(KEY_BYTES), MAX_EPOCHS)),
    )


@dataclasses.dataclass(frozen=True)
class EpochKeyWrap(Record):
    """Epoch keys ``k_0 … k_epoch`` boxed from a sender device to a recipient device."""

    v: int
    share: bytes
    epoch: int
    sender: bytes
    recipient: bytes
    nonce: bytes
    box: bytes

    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("share", Bin.exact(SHARE_ID_BYTES)),
        ("epoch", UInt(max_value=MAX_EPOCHS - 1)),
        ("sender", Bin.exact(HASH_BYTES)),
        ("recipient", Bin.exact(HASH_BYTES)),
        ("nonce", Bin.exact(BOX_NONCE_BYTES)),
        ("box", Bin(max_len=MAX_EPOCHS * (KEY_BYTES + 3) + 256)),
    )
    MAX_BYTES: ClassVar[int] = MAX_EPOCHS * (KEY_BYTES + 3) + 1024


def wrap_keys(
    ring: KeyRing,
    sender: DeviceIdentity,
    recipient: DeviceCertificate,
    random_bytes: RandomBytes = default_random,
) -> EpochKeyWrap:
    """Box the whole ring for ``recipient`` (whose certificate the sender has verified)."""
    bundle = KeyBundle(WRAP_VERSION, ring.share_id, recipient.device_id, ring.epoch_keys)
    nonce = take_random(random_bytes, BOX_NONCE_BYTES)
    box = Box(sender.box_private_key, PublicKey(x25519_public_of(recipient.device_key)))
    sealed = box.encrypt(bundle.encode(), nonce).ciphertext
    return EpochKeyWrap(
        WRAP_VERSION,
        ring.share_id,
        ring.latest_epoch,
        sender.device_id,
        recipient.device_id,
        nonce,
        sealed,
    )


def wrap_keys_for_user(
    ring: KeyRing,
    sender: DeviceIdentity,
    user_key: bytes,
    random_bytes: RandomBytes = default_random,
) -> EpochKeyWrap:
    """Box the whole ring for a member *user* (its Ed25519 key from the chain, as X25519).

    A device holding that user key (one that ran ``drift init`` or ``drift recover``) opens it
    with ``open_user_keys``: so a user who lost every device reads their shares again with the
    recovery code alone. The recipient is the user id, whose hash domain differs from device ids'.
    """
    recipient = user_id_of(user_key)
    bundle = KeyBundle(WRAP_VERSION, ring.share_id, recipient, ring.epoch_keys)
    nonce = take_random(random_bytes, BOX_NONCE_BYTES)
    box = Box(sender.box_private_key, PublicKey(x25519_public_of(user_key)))
    sealed = box.encrypt(bundle.encode(), nonce).ciphertext
    return EpochKeyWrap(
        WRAP_VERSION, ring.share_id, ring.latest_epoch, sender.device_id, recipient, nonce, sealed
    )


def open_keys(
    wrap: EpochKeyWrap,
    recipient: DeviceIdentity,
    sender: DeviceCertificate,
    chain: MembershipChain,
    *,
    need_epoch: int | None = None,
) -> KeyRing:
    """Open a wrap addressed to this device and check every key against the chain.

    Only an owner's device may hand out keys: the sender's user must have been an owner at some
    height since the wrap's epoch began, and the sender device must not be revoked. So neither
    the relay nor a former member can plant keys (the hash check alone would stop wrong keys,
    not a stale or unauthorised hand-out). ``need_epoch`` refuses a wrap older than the epoch
    the caller is missing (an old wrap replayed in place of the new one).

    Raises ``WrongShare``, ``BadKey`` (wrong recipient or sender, too old, does not open, or a
    key whose hash is not in the chain), ``Forbidden`` (the sender is no owner's device),
    ``Revoked`` or ``BadCertificate``.
    """
    return _open(
        wrap, recipient.device_id, recipient.box_private_key, "device", sender, chain, need_epoch
    )


def open_user_keys(
    wrap: EpochKeyWrap,
    user: UserIdentity,
    sender: DeviceCertificate,
    chain: MembershipChain,
    *,
    need_epoch: int | None = None,
) -> KeyRing:
    """Open a wrap addressed to ``user``: checked exactly as ``open_keys`` checks a device's."""
    return _open(wrap, user.user_id, user.box_private_key, "user", sender, chain, need_epoch)


def _open(
    wrap: EpochKeyWrap,
    recipient_id: bytes,
    recipient_key: PrivateKey,
    what: str,
    sender: DeviceCertificate,
    chain: MembershipChain,
    need_epoch: int | None,
) -> KeyRing:
    if wrap.share != chain.share_id:
        raise WrongShare("this key wrap is for another share")
    if wrap.recipient != recipient_id:
        raise BadKey(f"this key wrap is addressed to another {what}")
    if wrap.sender != sender.device_id:
        raise BadKey("this key wrap was made by another device than the certificate's")
    if need_epoch is not None and wrap.epoch < need_epoch:
        raise BadKey(
            f"this key wrap holds keys up to epoch {wrap.epoch}, not the needed epoch "
            f"{need_epoch} (an old wrap sent again?)",
            epoch=wrap.epoch,
        )
    sender.verify()
    _check_wrapper(chain, sender, wrap.epoch)
    box = Box(recipient_key, PublicKey(x25519_public_of(sender.device_key)))
    try:
        bundle = KeyBundle.decode(box.decrypt(wrap.box, wrap.nonce))
    except (CryptoError, DecodeError) as exc:
        raise BadKey(f"the key wrap does not open for this {what}") from exc
    if (
        bundle.share != wrap.share
        or bundle.recipient != wrap.recipient
        or len(bundle.keys) != wrap.epoch + 1
    ):
        raise BadKey("the key wrap's contents do not match its label")
    ring = KeyRing(bundle.share, bundle.keys)
    ring.check_against(chain)
    return ring


def _check_wrapper(chain: MembershipChain, sender: DeviceCertificate, epoch: int) -> None:
    if chain.is_revoked(sender.device_id):
        raise Revoked("this key wrap was made by a revoked device")
    try:
        start = chain.epoch_start(epoch)
    except UnknownHeight as exc:
        raise BadKey(
            f"this key wrap is for epoch {epoch}, which is not in the chain (yet)"
        ) from exc
    if not chain.was_owner_since(sender.user_id, start):
        raise Forbidden("this key wrap was not made by a device of an owner of the share")
