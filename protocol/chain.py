"""The membership chain of a share: who may read and write, and the hash of every key epoch.

Entries are signed by a device of an owner (the signer's device certificate travels inside the
entry, so a chain verifies offline with nothing else), and each names the hash of the previous
entry. The relay orders the chain: it accepts an entry only as the next one after the head, so every
replica sees one chain; a second, different entry at a taken height is a ``Fork``.

Kinds of entry, and the fields each one uses (the others are nil / empty):

- ``genesis`` (height 0): ``user_key`` of the owner (the signer's own user), ``epoch`` 0 and its
  ``key_hash``.
- ``add_user``: ``user_key``, ``role``.
- ``change_role``: ``user_key``, ``role``; ``cutoffs`` when a writer becomes a viewer.
- ``remove_user``: ``user_key``, ``cutoffs``: each of the user's devices' last valid counter.
- ``key_epoch``: the next ``epoch`` and its ``key_hash``.
- ``revoke_device``: the user's signed ``revocation`` and the device's ``cutoffs`` entry; it may be
  signed by an owner or by any unrevoked device of the revoked device's own user.

A cutoff at height ``r`` means: an envelope of that device naming a chain height below ``r`` is
valid only up to the cutoff counter (devices of a removed user missing from the map have cutoff 0).
So a removed user cannot keep writing by naming an old height, and every replica, whenever it
verifies, reaches the same verdict.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, ClassVar

from protocol.codec import Bin, Converted, Maybe, Nested, OneOf, Pair, Record, Seq, UInt
from protocol.errors import (
    BadCertificate,
    BrokenHashChain,
    CounterGap,
    DecodeError,
    Forbidden,
    Fork,
    InvalidChain,
    PastCutoff,
    Revoked,
    UnknownHeight,
    WrongShare,
)
from protocol.keys import CertifiedDevice, DeviceCertificate, DeviceRevocation, user_id_of
from protocol.signing import (
    HASH_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Purpose,
    digest,
    sign,
    verify,
)

CHAIN_VERSION = 1
SHARE_ID_BYTES = 16
ZERO_HASH = bytes(HASH_BYTES)
MAX_CUTOFFS = 1024


class Role(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"


WRITERS = frozenset({Role.OWNER, Role.EDITOR})


class EntryKind(StrEnum):
    GENESIS = "genesis"
    ADD_USER = "add_user"
    CHANGE_ROLE = "change_role"
    REMOVE_USER = "remove_user"
    KEY_EPOCH = "key_epoch"
    REVOKE_DEVICE = "revoke_device"


def _load_cutoffs(pairs: tuple[tuple[bytes, int], ...]) -> dict[bytes, int]:
    if len({device for device, _ in pairs}) != len(pairs):
        raise DecodeError("not_canonical", "cutoffs name a device twice")
    return dict(pairs)


CUTOFFS_KIND = Converted(
    inner=Seq(Pair(Bin.exact(HASH_BYTES), UInt()), MAX_CUTOFFS, ordered=True),
    load=_load_cutoffs,
    dump=lambda m: sorted([d, c] for d, c in dict(m).items()),
    name="cutoffs: array of [device_id bin[32], last valid counter uint], sorted by device_id",
)


@dataclasses.dataclass(frozen=True)
class ChainEntry(Record):
    v: int
    share: bytes
    height: int
    prev: bytes
    kind: str
    time_ms: int
    signer: DeviceCertificate
    user_key: bytes | None
    role: str | None
    cutoffs: Mapping[bytes, int]
    epoch: int | None
    key_hash: bytes | None
    revocation: DeviceRevocation | None
    sig: bytes

    DECODE_MEMO: ClassVar[bool] = True
    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("share", Bin.exact(SHARE_ID_BYTES)),
        ("height", UInt(max_value=2**32 - 1)),
        ("prev", Bin.exact(HASH_BYTES)),
        ("kind", OneOf(tuple(EntryKind))),
        ("time_ms", UInt()),
        ("signer", Nested(DeviceCertificate)),
        ("user_key", Maybe(Bin.exact(PUBLIC_KEY_BYTES))),
        ("role", Maybe(OneOf(tuple(Role)))),
        ("cutoffs", CUTOFFS_KIND),
        ("epoch", Maybe(UInt(max_value=2**32 - 1))),
        ("key_hash", Maybe(Bin.exact(HASH_BYTES))),
        ("revocation", Maybe(Nested(DeviceRevocation))),
        ("sig", Bin.exact(SIGNATURE_BYTES)),
    )
    MAX_BYTES: ClassVar[int] = 64 * 1024

    def __hash__(self) -> int:
        return hash(self.sig)

    def signed_bytes(self) -> bytes:
        return dataclasses.replace(self, sig=bytes(SIGNATURE_BYTES)).encode()

    @functools.cached_property
    def entry_hash(self) -> bytes:
        """What the next entry names as ``prev`` (and an invite names for the genesis)."""
        return digest(Purpose.CHAIN_ENTRY_HASH, self.encode())

    @property
    def signer_device_id(self) -> bytes:
        return self.signer.device_id

    @property
    def subject_user_id(self) -> bytes | None:
        return None if self.user_key is None else user_id_of(self.user_key)


# Entries after which someone holds keys they should no longer have (every role reads, so a
# change of role takes nothing away).
_LOSES_ACCESS = frozenset({EntryKind.REMOVE_USER, EntryKind.REVOKE_DEVICE})


# Which optional fields each kind must (True) or must not (False) carry.
_SHAPE: dict[EntryKind, dict[str, bool]] = {
    EntryKind.GENESIS: {"user_key": True, "role": False, "epoch": True, "revocation": False},
    EntryKind.ADD_USER: {"user_key": True, "role": True, "epoch": False, "revocation": False},
    EntryKind.CHANGE_ROLE: {"user_key": True, "role": True, "epoch": False, "revocation": False},
    EntryKind.REMOVE_USER: {"user_key": True, "role": False, "epoch": False, "revocation": False},
    EntryKind.KEY_EPOCH: {"user_key": False, "role": False, "epoch": True, "revocation": False},
    EntryKind.REVOKE_DEVICE: {"user_key": False, "role": False, "epoch": False, "revocation": True},
}


def _check_shape(entry: ChainEntry) -> None:
    kind = EntryKind(entry.kind)
    for name, required in _SHAPE[kind].items():
        present = getattr(entry, name) is not None
        if present != required:
            what = "needs" if required else "must not carry"
            raise InvalidChain(f"a {kind.value} entry {what} {name}")
    if (entry.epoch is None) != (entry.key_hash is None):
        raise InvalidChain("epoch and key_hash come together")
    if entry.cutoffs and kind not in (
        EntryKind.REMOVE_USER,
        EntryKind.CHANGE_ROLE,
        EntryKind.REVOKE_DEVICE,
    ):
        raise InvalidChain(f"a {kind.value} entry carries no cutoffs")
    if (entry.height == 0) != (kind is EntryKind.GENESIS):
        raise InvalidChain("the genesis entry, and only it, is at height 0")
    if kind is EntryKind.GENESIS and (entry.prev != ZERO_HASH or entry.epoch != 0):
        raise InvalidChain("a genesis entry has no previous entry and starts epoch 0")


@dataclasses.dataclass
class _Removal:
    height: int
    cutoffs: dict[bytes, int]


class MembershipChain:
    """A verified chain and the state it defines; ``append`` verifies and extends it.

    Queries take a chain ``height`` so that an envelope written under an older chain is judged by
    the chain as it was then (roles, epoch) and by every later removal (cutoffs).
    """

    def __init__(self, genesis: ChainEntry) -> None:
        self.entries: list[ChainEntry] = []
        self.hashes: list[bytes] = []
        self.share_id = genesis.share
        self._user_keys: dict[bytes, bytes] = {}
        # user id → ascending [(height, role or None when removed)]
        self._roles: dict[bytes, list[tuple[int, Role | None]]] = {}
        # ascending [(height, epoch, key_hash)]
        self._epochs: list[tuple[int, int, bytes]] = []
        self._removals: dict[bytes, list[_Removal]] = {}  # user id → removals / demotions
        self._revoked: dict[bytes, tuple[int, int]] = {}  # device id → (height, cutoff)
        self.append(genesis)

    # --- queries --------------------------------------------------------------------------

    @property
    def height(self) -> int:
        """Height of the head entry (0 when only the genesis exists)."""
        return len(self.entries) - 1

    @property
    def head_hash(self) -> bytes:
        return self.hashes[-1]

    @property
    def genesis_hash(self) -> bytes:
        return self.hashes[0]

    @property
    def current_epoch(self) -> int:
        return self._epochs[-1][1]

    def _check_height(self, height: int) -> None:
        if height > self.height:
            raise UnknownHeight(
                f"chain height {height} is ahead of the known head {self.height}; "
                "fetch the membership chain first",
                height=height,
                head=self.height,
            )

    def role_at(self, user_id: bytes, height: int | None = None) -> Role | None:
        """The role just after the entry at ``height`` (default: head); None if not a member."""
        height = self.height if height is None else height
        self._check_height(height)
        history = self._roles.get(user_id, [])
        i = bisect.bisect_right(history, height, key=lambda item: item[0])
        return history[i - 1][1] if i else None

    def user_key(self, user_id: bytes) -> bytes | None:
        return self._user_keys.get(user_id)

    def members(self, height: int | None = None) -> dict[bytes, Role]:
        """User id → role of every member at ``height`` (default: head)."""
        out = {}
        for user_id in self._roles:
            role = self.role_at(user_id, height)
            if role is not None:
                out[user_id] = role
        return out

    def owner_ids(self) -> set[bytes]:
        return {u for u, r in self.members().items() if r is Role.OWNER}

    def epoch_at(self, height: int | None = None) -> int:
        """The key epoch writers must use under the chain at ``height``."""
        height = self.height if height is None else height
        self._check_height(height)
        i = bisect.bisect_right(self._epochs, height, key=lambda item: item[0])
        return self._epochs[i - 1][1]

    def key_hash(self, epoch: int) -> bytes:
        for _, number, key_hash in self._epochs:
            if number == epoch:
                return key_hash
        raise UnknownHeight(f"key epoch {epoch} is not in the chain yet", epoch=epoch)

    def epoch_start(self, epoch: int) -> int:
        """The chain height of the entry that started ``epoch``."""
        for height, number, _ in self._epochs:
            if number == epoch:
                return height
        raise UnknownHeight(f"key epoch {epoch} is not in the chain yet", epoch=epoch)

    def was_owner_since(self, user_id: bytes, height: int) -> bool:
        """Whether the user was an owner at some height from ``height`` up to the head."""
        history = self._roles.get(user_id, [])
        if self.role_at(user_id, height) is Role.OWNER:
            return True
        return any(h > height and role is Role.OWNER for h, role in history)

    def rotation_due(self) -> bool:
        """Whether someone lost access (a user removed, a device revoked) since the current key
        epoch began: the keys they hold still open what is written, so an owner must start a
        new epoch."""
        since = self._epochs[-1][0]
        return any(entry.kind in _LOSES_ACCESS for entry in self.entries[since + 1 :])

    def is_revoked(self, device_id: bytes) -> bool:
        return device_id in self._revoked

    def last_valid_counter(self, user_id: bytes, device_id: bytes) -> int | None:
        """The highest counter any valid envelope of ``device_id`` can carry, now that the device
        is revoked or its user may no longer write; None while they may write on.

        An envelope that has seen a later counter of that device depends on one every replica
        refuses: a replica holding it must refuse it too (the relay never appends it).
        """
        limit: int | None = None
        revoked = self._revoked.get(device_id)
        if revoked is not None:
            limit = revoked[1]
        removals = self._removals.get(user_id)
        if removals and self.role_at(user_id) not in WRITERS:
            # The last removal's cutoff bounds every height below it; above it they are no
            # writers (an earlier removal's lower cutoff bounds only heights before a re-add).
            cutoff = removals[-1].cutoffs.get(device_id, 0)
            limit = cutoff if limit is None else min(limit, cutoff)
        return limit

    def check_device_counter(
        self, user_id: bytes, device_id: bytes, counter: int, height: int
    ) -> None:
        """Refuse a counter written past a removal or revocation cutoff (see module docs)."""
        revoked = self._revoked.get(device_id)
        if revoked is not None:
            revoked_at, cutoff = revoked
            if height >= revoked_at or counter > cutoff:
                raise Revoked(
                    f"device was revoked at chain height {revoked_at} after counter {cutoff}",
                    height=revoked_at,
                    cutoff=cutoff,
                )
        for removal in self._removals.get(user_id, []):
            if height < removal.height and counter > removal.cutoffs.get(device_id, 0):
                raise PastCutoff(
                    f"counter {counter} is past this device's cutoff "
                    f"{removal.cutoffs.get(device_id, 0)} set at chain height {removal.height}",
                    height=removal.height,
                    cutoff=removal.cutoffs.get(device_id, 0),
                )

    # --- extending ------------------------------------------------------------------------

    def append(self, entry: ChainEntry) -> bool:
        """Verify ``entry`` as the next one and add it; False if it is already there, unchanged.

        Raises ``Fork`` (another entry holds that height), ``CounterGap`` (entries missing before
        it), ``BrokenHashChain``, ``WrongShare``, ``BadSignature``, ``BadCertificate``,
        ``Revoked``, ``Forbidden`` (not signed by an owner) or ``InvalidChain``.
        """
        if entry.share != self.share_id:
            raise WrongShare("chain entry is for another share")
        if entry.height < len(self.entries):
            if self.entries[entry.height].encode() == entry.encode():
                return False
            raise Fork(
                f"another entry already holds chain height {entry.height}", height=entry.height
            )
        if entry.height > len(self.entries):
            raise CounterGap(
                f"chain entry at height {entry.height} but the head is {self.height}",
                have=self.height,
            )
        if entry.v != CHAIN_VERSION:
            raise InvalidChain(f"chain entry version {entry.v} is not supported")
        _check_shape(entry)
        if self.entries and entry.prev != self.head_hash:
            raise BrokenHashChain(
                f"chain entry {entry.height} does not name the hash of entry {self.height}"
            )
        signer = entry.signer.verify()
        verify(signer.device_key, Purpose.CHAIN_ENTRY, entry.signed_bytes(), entry.sig)
        if self.entries:
            self._check_signer(entry)
            self._apply(entry)
        else:
            self._apply_genesis(entry)
        self.entries.append(entry)
        self.hashes.append(entry.entry_hash)
        return True

    def _check_signer(self, entry: ChainEntry) -> None:
        signer_device = entry.signer.device_id
        if signer_device in self._revoked:
            raise Revoked("chain entry signed by a revoked device")
        signer_user = entry.signer.user_id
        role = self.role_at(signer_user)
        if role is Role.OWNER:
            return
        if (
            entry.kind == EntryKind.REVOKE_DEVICE
            and entry.revocation is not None
            and entry.revocation.user_id == signer_user
            and role is not None
        ):
            return  # members may revoke their own devices
        raise Forbidden("chain entry is not signed by an owner of the share")

    def _apply_genesis(self, entry: ChainEntry) -> None:
        assert entry.user_key is not None
        assert entry.key_hash is not None
        if entry.user_key != entry.signer.user_key:
            raise InvalidChain("the genesis entry is signed by a device of its owner")
        user_id = user_id_of(entry.user_key)
        self._user_keys[user_id] = entry.user_key
        self._roles[user_id] = [(0, Role.OWNER)]
        self._epochs.append((0, 0, entry.key_hash))

    def _apply(self, entry: ChainEntry) -> None:
        height = entry.height
        kind = EntryKind(entry.kind)
        if kind is EntryKind.KEY_EPOCH:
            assert entry.epoch is not None
            assert entry.key_hash is not None
            if entry.epoch != self.current_epoch + 1:
                raise InvalidChain(
                    f"key epoch {entry.epoch} does not follow epoch {self.current_epoch}"
                )
            self._epochs.append((height, entry.epoch, entry.key_hash))
            return
        if kind is EntryKind.REVOKE_DEVICE:
            self._apply_revocation(entry)
            return
        assert entry.user_key is not None
        user_id = user_id_of(entry.user_key)
        current = self.role_at(user_id)
        if kind is EntryKind.ADD_USER:
            if current is not None:
                raise InvalidChain("this user is already a member")
            self._user_keys[user_id] = entry.user_key
            self._set_role(user_id, height, Role(entry.role or ""))
            return
        if current is None:
            raise InvalidChain("this user is not a member")
        new_role = Role(entry.role) if kind is EntryKind.CHANGE_ROLE and entry.role else None
        if new_role == current:
            raise InvalidChain(f"this user is already {current.value}")
        if current is Role.OWNER and self.owner_ids() == {user_id}:
            raise InvalidChain("a share must keep at least one owner")
        demoted = current in WRITERS and new_role not in WRITERS
        if entry.cutoffs and not demoted:
            # A viewer's cutoffs were fixed when it stopped writing; new ones would only
            # contradict them.
            raise InvalidChain(
                "cutoffs are set only when a writer loses the right to write "
                f"(this user is {current.value})"
            )
        if demoted:
            self._removals.setdefault(user_id, []).append(_Removal(height, dict(entry.cutoffs)))
        self._set_role(user_id, height, new_role)

    def _apply_revocation(self, entry: ChainEntry) -> None:
        revocation = entry.revocation
        assert revocation is not None
        user_key = self._user_keys.get(revocation.user_id)
        if user_key is None:
            raise InvalidChain("revocation by a user who was never a member")
        try:
            revocation.verify(user_key)
        except BadCertificate as exc:
            raise InvalidChain(f"revocation does not verify: {exc.message}") from exc
        if revocation.device_id in self._revoked:
            raise InvalidChain("this device is already revoked")
        if set(entry.cutoffs) != {revocation.device_id}:
            raise InvalidChain("a revoke_device entry has exactly the revoked device's cutoff")
        self._revoked[revocation.device_id] = (entry.height, entry.cutoffs[revocation.device_id])

    def _set_role(self, user_id: bytes, height: int, role: Role | None) -> None:
        self._roles.setdefault(user_id, []).append((height, role))


def verify_chain(entries: Iterable[ChainEntry], share_id: bytes | None = None) -> MembershipChain:
    """Verify a whole chain offline, from its genesis; optionally that it is ``share_id``'s."""
    items = iter(entries)
    first = next(items, None)
    if first is None:
        raise InvalidChain("a membership chain starts with a genesis entry")
    if share_id is not None and first.share != share_id:
        raise WrongShare("this chain belongs to another share")
    chain = MembershipChain(first)
    for entry in items:
        if not chain.append(entry):
            raise Fork(f"chain entry {entry.height} appears twice", height=entry.height)
    return chain


# --- making entries ---------------------------------------------------------------------------


def _signed(
    signer: CertifiedDevice,
    *,
    share: bytes,
    height: int,
    prev: bytes,
    kind: EntryKind,
    now_ms: int,
    **fields: Any,
) -> ChainEntry:
    defaults: dict[str, Any] = {
        "user_key": None,
        "role": None,
        "cutoffs": {},
        "epoch": None,
        "key_hash": None,
        "revocation": None,
    }
    defaults.update(fields)
    unsigned = ChainEntry(
        v=CHAIN_VERSION,
        share=share,
        height=height,
        prev=prev,
        kind=kind.value,
        time_ms=now_ms,
        signer=signer.certificate,
        sig=bytes(SIGNATURE_BYTES),
        **defaults,
    )
    sig = sign(signer.identity.signing_key, Purpose.CHAIN_ENTRY, unsigned.signed_bytes())
    return dataclasses.replace(unsigned, sig=sig)


def make_genesis(
    signer: CertifiedDevice, share_id: bytes, epoch0_key_hash: bytes, now_ms: int
) -> ChainEntry:
    """The first entry of a new share: the signer's user is its owner; epoch 0 starts."""
    return _signed(
        signer,
        share=share_id,
        height=0,
        prev=ZERO_HASH,
        kind=EntryKind.GENESIS,
        now_ms=now_ms,
        user_key=signer.certificate.user_key,
        epoch=0,
        key_hash=epoch0_key_hash,
    )


def _next(
    chain: MembershipChain, signer: CertifiedDevice, kind: EntryKind, now_ms: int, **f: Any
) -> ChainEntry:
    return _signed(
        signer,
        share=chain.share_id,
        height=chain.height + 1,
        prev=chain.head_hash,
        kind=kind,
        now_ms=now_ms,
        **f,
    )


def make_add_user(
    chain: MembershipChain, signer: CertifiedDevice, user_key: bytes, role: Role, now_ms: int
) -> ChainEntry:
    return _next(chain, signer, EntryKind.ADD_USER, now_ms, user_key=user_key, role=role.value)


def make_change_role(
    chain: MembershipChain,
    signer: CertifiedDevice,
    user_key: bytes,
    role: Role,
    now_ms: int,
    cutoffs: Mapping[bytes, int] | None = None,
) -> ChainEntry:
    """Change a member's role; demoting a writer to viewer needs its devices' cutoffs."""
    return _next(
        chain,
        signer,
        EntryKind.CHANGE_ROLE,
        now_ms,
        user_key=user_key,
        role=role.value,
        cutoffs=dict(cutoffs or {}),
    )


def make_remove_user(
    chain: MembershipChain,
    signer: CertifiedDevice,
    user_key: bytes,
    cutoffs: Mapping[bytes, int],
    now_ms: int,
) -> ChainEntry:
    """Remove a member; ``cutoffs`` = each of its devices' last counter the owner accepts."""
    return _next(
        chain, signer, EntryKind.REMOVE_USER, now_ms, user_key=user_key, cutoffs=dict(cutoffs)
    )


def make_key_epoch(
    chain: MembershipChain, signer: CertifiedDevice, key_hash: bytes, now_ms: int
) -> ChainEntry:
    """Start the next key epoch (after a removal, so later writes are unreadable to the removed)."""
    return _next(
        chain,
        signer,
        EntryKind.KEY_EPOCH,
        now_ms,
        epoch=chain.current_epoch + 1,
        key_hash=key_hash,
    )


def make_revoke_device(
    chain: MembershipChain,
    signer: CertifiedDevice,
    revocation: DeviceRevocation,
    cutoff: int,
    now_ms: int,
) -> ChainEntry:
    """Record a user's revocation of a device, with the device's last valid counter."""
    return _next(
        chain,
        signer,
        EntryKind.REVOKE_DEVICE,
        now_ms,
        revocation=revocation,
        cutoffs={revocation.device_id: cutoff},
    )
