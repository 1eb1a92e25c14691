"""Creating, inviting to, joining and leaving shares: the account-level flows around the engine.

Key delivery on invite: an invite carries a one-time secret. The owner seals the share's key ring
under a key derived from it and stores the sealed package as a block of the share (only members
can read blocks, and the invitee is made a member by the chain entry written at the same time);
the invite code names that block. Whoever holds the code, and is the invited user, can open it;
the keys are then checked against the hashes in the membership chain, so a relay cannot
substitute keys. Keys of epochs started after the invite reach the new member's devices through
the relay's key-wrap mailbox (:mod:`peer.engine.rekey`).

Removing a member and revoking a device rotate the keys (see :mod:`peer.engine.rekey`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from nacl.encoding import RawEncoder
from nacl.exceptions import CryptoError
from nacl.hash import blake2b
from nacl.secret import SecretBox

from peer.device.config import DeviceConfig, ShareConfig
from peer.device.home import Home
from peer.device.store import ShareStore
from peer.engine.rekey import (
    CHAIN_RACE_CODES,
    PENDING_KEYS,
    Rotation,
    fetch_ring,
    saved_ring,
    start_epoch,
    wrap_for_users,
)
from peer.errors import (
    ConfigError,
    IntegrityError,
    NotFound,
    RelayRefused,
    RelayUnreachable,
    ShareError,
    UsageError,
)
from peer.remote.link import STALE_CUTOFFS, RelayLink
from protocol.chain import (
    ChainEntry,
    MembershipChain,
    Role,
    make_add_user,
    make_change_role,
    make_genesis,
    make_remove_user,
    make_revoke_device,
    verify_chain,
)
from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from protocol.invite import Invite, check_invite, make_invite
from protocol.keys import CertifiedDevice, DeviceCertificate, DeviceRevocation, user_id_of
from protocol.keyschedule import KeyRing, new_share_id
from seams import Clock, RandomSource
from seams.statedb import FILE_STATE_DATABASES, StateDatabases

SECRET_BYTES = 32
KEY_PACKAGE_PERSON = b"drift-invite-key"
SEPARATOR = "~"
# How many times a removal or revocation is signed again with cutoffs read anew when the relay
# finds that the device kept writing after they were read (each try is a few round trips; a
# device that wins every race is writing faster than a removal can be signed).
CUTOFF_TRIES = 4


def state_path(home: Home, share_id: str) -> Path:
    return home.share_dir(share_id) / "state.db"


def open_state(
    home: Home, share_id: str, databases: StateDatabases = FILE_STATE_DATABASES
) -> ShareStore:
    """The share's state database, from the device's ``Seams.databases``."""
    return ShareStore(state_path(home, share_id), databases)


def _check_folder(home: Home, folder: Path) -> Path:
    folder = folder.expanduser().resolve()
    if home.root == folder or home.root.is_relative_to(folder):
        raise UsageError(
            f"the device's state ({home.root}) would be inside the synced folder {folder}",
            hint="choose another folder, or another --home",
        )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def create_share(
    home: Home,
    config: DeviceConfig,
    device: CertifiedDevice,
    link: RelayLink,
    folder: Path,
    *,
    name: str,
    clock: Clock,
    rng: RandomSource,
    databases: StateDatabases = FILE_STATE_DATABASES,
) -> str:
    folder = _check_folder(home, folder)
    share_id = new_share_id(rng.bytes)
    ring = KeyRing.create(share_id, rng.bytes)
    genesis = make_genesis(device, share_id, ring.epoch(0).key_hash, clock.now_ms())
    share = await link.create_share(genesis.encode())
    store = open_state(home, share, databases)
    try:
        store.add_chain_entries(0, [genesis.encode()])
        store.set_epoch_keys(ring.epoch_keys)
        # The owner's own user gets a wrap at once: it is what brings the share back after every
        # device is lost (drift recover).
        await wrap_for_users(store, link, verify_chain([genesis], share_id), ring, device, rng)
    finally:
        store.close()
    config.shares[share] = ShareConfig(share, str(folder), name or folder.name)
    config.save(home.config)
    return share


async def _fresh_chain(link: RelayLink, store: ShareStore, share: str) -> MembershipChain:
    entries = [ChainEntry.decode(e) for e in await link.chain(share, 0)]
    try:
        chain = verify_chain(entries, bytes.fromhex(share))
    except ProtocolError as exc:
        raise IntegrityError(f"the relay's membership chain does not verify: {exc}") from exc
    store.add_chain_entries(0, [e.encode() for e in entries])
    return chain


def _require_owner(chain: MembershipChain, device: CertifiedDevice) -> None:
    if chain.role_at(device.certificate.user_id) is not Role.OWNER:
        raise ShareError(
            "only an owner of the share can do this", hint="ask an owner of the share to do it"
        )


@dataclass(frozen=True, slots=True)
class InviteCode:
    invite: Invite
    secret: bytes
    block_id: bytes

    def to_text(self) -> str:
        tail = base64.b32encode(self.secret + self.block_id).decode("ascii").rstrip("=")
        return self.invite.to_text() + SEPARATOR + tail

    @classmethod
    def from_text(cls, text: str) -> InviteCode:
        head, sep, tail = text.strip().partition(SEPARATOR)
        if not sep:
            raise UsageError("this invite code is incomplete", hint="copy the whole code")
        try:
            invite = Invite.from_text(head)
            raw = base64.b32decode(tail.upper() + "=" * (-len(tail) % 8))
        except (ProtocolError, ValueError) as exc:
            raise UsageError(
                f"this invite code is damaged: {exc}", hint="ask for it again"
            ) from exc
        if len(raw) != SECRET_BYTES + 32:
            raise UsageError("this invite code is damaged", hint="ask for it again")
        return cls(invite, raw[:SECRET_BYTES], raw[SECRET_BYTES:])


def _package_box(secret: bytes) -> SecretBox:
    key = blake2b(secret, digest_size=32, person=KEY_PACKAGE_PERSON, encoder=RawEncoder)
    return SecretBox(key)


async def invite_member(
    home: Home,
    config: DeviceConfig,
    device: CertifiedDevice,
    link: RelayLink,
    share: str,
    user_key: bytes,
    role: Role,
    *,
    clock: Clock,
    rng: RandomSource,
    databases: StateDatabases = FILE_STATE_DATABASES,
) -> str:
    """Add (or re-role) a user and return the invite code that gives their devices the keys."""
    store = open_state(home, share, databases)
    try:
        chain = await _fresh_chain(link, store, share)
        _require_owner(chain, device)
        current = chain.role_at(user_id_of(user_key))
        entry = None
        if current is None:
            entry = make_add_user(chain, device, user_key, role, clock.now_ms())
        elif current is not role and current is not Role.OWNER:
            if role is Role.VIEWER:
                raise ShareError(
                    "demoting an editor needs their devices' cutoffs",
                    hint="remove the member and invite them again as a viewer",
                )
            entry = make_change_role(chain, device, user_key, role, clock.now_ms())
        if entry is not None:
            await link.extend_chain(share, entry.encode())
            store.add_chain_entries(entry.height, [entry.encode()])
            chain.append(entry)
        ring = KeyRing(chain.share_id, tuple(store.epoch_keys()))
        await wrap_for_users(store, link, chain, ring, device, rng)
        secret = rng.bytes(SECRET_BYTES)
        package = pack({"share": chain.share_id, "keys": list(ring.epoch_keys)})
        sealed = bytes(_package_box(secret).encrypt(package, rng.bytes(SecretBox.NONCE_SIZE)))
        block_id = hashlib.sha256(sealed).digest()
        await link.put_blocks(share, [(block_id, sealed)])
    finally:
        store.close()
    invite = make_invite(chain, config.relay_url, device.device_id)
    return InviteCode(invite, secret, block_id).to_text()


async def join_share(
    home: Home,
    config: DeviceConfig,
    device: CertifiedDevice,
    link: RelayLink,
    code: InviteCode,
    folder: Path,
    *,
    databases: StateDatabases = FILE_STATE_DATABASES,
) -> str:
    share = code.invite.share.hex()
    if share in config.shares:
        raise UsageError(f"this device already syncs share {share} at {config.shares[share].path}")
    folder = _check_folder(home, folder)
    store = open_state(home, share, databases)
    try:
        chain = await _fresh_chain(link, store, share)
        try:
            check_invite(code.invite, chain)
        except ProtocolError as exc:
            raise IntegrityError(f"the invite does not match the relay's share: {exc}") from exc
        if chain.role_at(device.certificate.user_id) is None:
            raise ShareError(
                "your user is not a member of this share",
                hint="ask the owner to invite your user code (see `drift status`)",
            )
        blocks = await link.get_blocks(share, [code.block_id])
        sealed = blocks.get(code.block_id)
        if sealed is None or hashlib.sha256(sealed).digest() != code.block_id:
            raise IntegrityError("the relay did not return the invite's key package")
        try:
            package = unpack(_package_box(code.secret).decrypt(sealed))
            ring = KeyRing(chain.share_id, tuple(package["keys"]))
            ring.check_against(chain)
        except (CryptoError, ProtocolError, KeyError, TypeError) as exc:
            raise IntegrityError(f"the invite's keys do not open or do not verify: {exc}") from exc
        store.set_epoch_keys(ring.epoch_keys)
    finally:
        store.close()
    config.shares[share] = ShareConfig(share, str(folder), folder.name)
    if not config.relay_url:
        config.relay_url = code.invite.relay_url
    config.save(home.config)
    return share


@dataclass(frozen=True, slots=True)
class RemovalDone:
    """What a removal or revocation did to one share: the chain height of its entry, and the
    key epoch started after it (None: not rotated here; see ``reason``)."""

    share: str
    height: int
    rotation: Rotation | None
    reason: str = ""


async def remove_member(
    home: Home,
    device: CertifiedDevice,
    link: RelayLink,
    share: str,
    user_key: bytes,
    *,
    clock: Clock,
    rng: RandomSource,
    databases: StateDatabases = FILE_STATE_DATABASES,
) -> RemovalDone:
    """Remove a user and rotate the share's keys, so nothing written later opens for them.

    Their devices' envelopes stay valid up to what the relay holds now (the cutoffs). Then a new
    key epoch starts and is wrapped for every remaining member device (:mod:`peer.engine.rekey`).
    """
    store = open_state(home, share, databases)
    try:
        chain = await _fresh_chain(link, store, share)
        _require_owner(chain, device)
        user_id = user_id_of(user_key)
        if chain.role_at(user_id) is None:
            raise NotFound("that user is not a member of the share")
        cutoffs = await removal_cutoffs(store, link, share, user_key)
        entry = await append_removal(store, link, chain, device, user_key, cutoffs, clock=clock)
        return await _rotate_after(store, chain, device, link, entry.height, clock=clock, rng=rng)
    finally:
        store.close()


async def removal_cutoffs(
    store: ShareStore, link: RelayLink, share: str, user_key: bytes, *, named: str | None = None
) -> dict[bytes, int]:
    """Each device of the user at the counter the relay's log holds now for it.

    ``named``: a device (hex) the relay named as the user's when it refused stale cutoffs; it is
    given its counter even if we never saw its certificate. The relay attributes devices to
    users by their logins, and one of theirs not listed among member devices (a revoked one,
    say) would otherwise be refused on every try. A device of another user in a removal's
    cutoffs changes nothing (they bind only the removed user's devices), so the relay's word is
    enough: it is the same word as the vector the cutoffs come from.
    """
    user_id = user_id_of(user_key)
    certificates = {d: DeviceCertificate.decode(c) for d, c in store.certificates().items()}
    # A device of theirs nothing of which was applied here yet may still have envelopes in
    # the relay's log: left out of the cutoffs, they would all fall past cutoff 0 for this
    # device, while devices that applied them before hearing of the removal keep them (the
    # trees differ for good: simulation seed 330). The relay lists the user's devices; each
    # certificate must be signed by that user's key.
    for listed in await link.member_devices(share):
        try:
            certificate = DeviceCertificate.decode(listed.certificate).verify(user_key)
        except ProtocolError:
            continue
        certificates.setdefault(certificate.device_id, certificate)
    vector = await link.server_vector(share)
    return {
        bytes.fromhex(d): c
        for d, c in vector.items()
        if d == named
        or ((cert := certificates.get(bytes.fromhex(d))) is not None and cert.user_id == user_id)
    }


async def append_removal(
    store: ShareStore,
    link: RelayLink,
    chain: MembershipChain,
    device: CertifiedDevice,
    user_key: bytes,
    cutoffs: dict[bytes, int],
    *,
    clock: Clock,
) -> ChainEntry:
    """Sign the removal of ``user_key`` with ``cutoffs`` and append it to the relay's chain and
    ours; the entry that landed.

    Until the entry lands the user's devices are members and may append: the relay refuses an
    entry whose cutoff is below a counter it already holds (``stale_cutoffs``), since every
    replica would refuse that envelope while those that applied it keep it. Then the cutoffs
    are read again and the entry signed anew, a few times.
    """
    share = chain.share_id.hex()

    async def sign(refusal: RelayRefused | None) -> ChainEntry:
        nonlocal cutoffs
        if refusal is not None:
            named = refusal.details.get("device")
            cutoffs = await removal_cutoffs(
                store, link, share, user_key, named=named if isinstance(named, str) else None
            )
        return make_remove_user(chain, device, user_key, cutoffs, clock.now_ms())

    entry = await _extend_while_cutoffs_stale(link, share, sign)
    chain.append(entry)
    store.add_chain_entries(entry.height, [entry.encode()])
    return entry


async def _extend_while_cutoffs_stale(
    link: RelayLink,
    share: str,
    sign: Callable[[RelayRefused | None], Awaitable[ChainEntry]],
) -> ChainEntry:
    """Append the entry ``sign`` makes to the relay's chain; the entry that landed. While the
    relay refuses it as ``stale_cutoffs`` (a device whose writing it ends appended meanwhile),
    ``sign`` is asked again with that refusal, up to ``CUTOFF_TRIES`` entries in all."""
    refusal: RelayRefused | None = None
    tries = 0
    while True:
        entry = await sign(refusal)
        tries += 1
        try:
            await link.extend_chain(share, entry.encode())
        except RelayRefused as exc:
            if exc.code != STALE_CUTOFFS or tries >= CUTOFF_TRIES:
                raise
            refusal = exc
            continue
        return entry


async def revoke_in_shares(
    home: Home,
    config: DeviceConfig,
    device: CertifiedDevice,
    link: RelayLink,
    revocation: DeviceRevocation,
    *,
    clock: Clock,
    rng: RandomSource,
    databases: StateDatabases = FILE_STATE_DATABASES,
) -> list[RemovalDone]:
    """Record a revoked device in the chain of every share this device syncs, and rotate keys
    where this device's user is an owner (elsewhere an owner's device rotates on its next pass).

    The device's cutoff is its last envelope the relay holds now.
    """
    done = []
    target = revocation.device_id
    for share in sorted(config.shares):
        store = open_state(home, share, databases)
        try:
            chain = await _fresh_chain(link, store, share)
            if chain.is_revoked(target) or chain.role_at(revocation.user_id) is None:
                continue
            entry = await _append_revocation(link, chain, device, revocation, clock=clock)
            chain.append(entry)
            store.add_chain_entries(entry.height, [entry.encode()])
            if chain.role_at(device.certificate.user_id) is not Role.OWNER:
                done.append(
                    RemovalDone(share, entry.height, None, "an owner's device rotates the keys")
                )
                continue
            done.append(
                await _rotate_after(store, chain, device, link, entry.height, clock=clock, rng=rng)
            )
        finally:
            store.close()
    return done


async def _append_revocation(
    link: RelayLink,
    chain: MembershipChain,
    device: CertifiedDevice,
    revocation: DeviceRevocation,
    *,
    clock: Clock,
) -> ChainEntry:
    """Append the revocation with the device's counter in the relay's log as its cutoff.

    The device may still append until the entry lands (a stolen one is not told it is revoked):
    the relay then refuses the stale cutoff, and it is read again, a few times, as for a removal.
    """
    share = chain.share_id.hex()

    async def sign(_: RelayRefused | None) -> ChainEntry:
        cutoff = (await link.server_vector(share)).get(revocation.device_id.hex(), 0)
        return make_revoke_device(chain, device, revocation, cutoff, clock.now_ms())

    return await _extend_while_cutoffs_stale(link, share, sign)


async def _rotate_after(
    store: ShareStore,
    chain: MembershipChain,
    device: CertifiedDevice,
    link: RelayLink,
    height: int,
    *,
    clock: Clock,
    rng: RandomSource,
) -> RemovalDone:
    share = chain.share_id.hex()
    ring = saved_ring(store, chain)
    if ring is None or ring.latest_epoch < chain.current_epoch:
        ring, why = await fetch_ring(link, share, device, chain)
        if ring is None:
            return RemovalDone(share, height, None, f"keys not rotated yet: {why}")
        store.set_epoch_keys(ring.epoch_keys)
    try:
        rotation = await start_epoch(store, chain, ring, device, link, clock=clock, rng=rng)
    except RelayRefused as exc:
        if exc.code not in CHAIN_RACE_CODES:
            raise
        store.set(PENDING_KEYS, None)
        return RemovalDone(
            share, height, None, "another owner's device changed the chain first; it rotates"
        )
    except RelayUnreachable as exc:
        # The removal is written; the chain now says a rotation is due, and the next sync pass
        # of an owner's device (this one's daemon too) finishes it.
        return RemovalDone(
            share,
            height,
            None,
            f"the relay was lost before the new key was written and handed out ({exc}); "
            "`drift run` on an owner's device finishes it",
        )
    return RemovalDone(share, height, rotation)


def leave_share(home: Home, config: DeviceConfig, share: str) -> None:
    if share not in config.shares:
        raise ConfigError(f"this device does not sync share {share}")
    del config.shares[share]
    config.save(home.config)
