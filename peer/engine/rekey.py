"""Epoch keys at run time: starting a new epoch, handing it to member devices, adopting it.

Who does what (also in docs/architecture.md, *Keys and rotation*):

- **Starting an epoch.** When the chain says a rotation is due (a user was removed or a device
  revoked since the current epoch began), an owner device draws the next epoch key, writes the
  ``key_epoch`` entry and wraps the new ring for every member device. ``remove_member`` and
  ``drift device revoke`` do it at once; any owner device's sync pass does it otherwise (a member
  who revoked their own device cannot: only owners sign ``key_epoch``).
- **Handing out.** The owner device that starts an epoch wraps it for every member device the
  relay lists; on later passes any owner device wraps the current epoch for member devices that
  have no wrap for it yet (a device linked or a member who joined later), checking the list
  at most every ``WRAP_CHECK_INTERVAL_MS`` and whenever the chain moved.
- **User wraps.** The same owner device also wraps each epoch for every member *user* (to the
  X25519 form of the user key the chain records), when it creates a share, invites, rotates, and
  for existing shares on its next pass. A device holding its user key (after ``drift init`` or
  ``drift recover``) opens these with ``open_user_keys``: a user who lost every device gets their
  shares back with the recovery code alone. Which users this device has wrapped for is kept in
  the share's store (``USER_WRAPS``), so a pass asks the relay nothing to know it.
- **Adopting.** A device whose chain names an epoch it has no key for takes the wraps addressed
  to it from the relay's mailbox and opens them with ``open_keys``, which refuses anything not
  made by an owner's device, older than the epoch needed, or not matching the chain's key hashes.
  Until then it publishes nothing and applies nothing written under the new epoch.

The new ring is saved as ``pending_keys`` before its ``key_epoch`` entry leaves: a crash between
the relay taking the entry and the device saving the key must not lose the only copy of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from peer.device.store import ShareStore
from peer.engine.replica import ShareReplica
from peer.errors import RelayRefused
from peer.remote.link import RelayLink
from protocol.chain import MembershipChain, Role, make_key_epoch
from protocol.errors import ProtocolError
from protocol.keys import CertifiedDevice, DeviceCertificate, UserIdentity
from protocol.keyschedule import (
    EpochKeyWrap,
    KeyRing,
    open_keys,
    open_user_keys,
    wrap_keys,
    wrap_keys_for_user,
)
from seams import Clock, RandomSource

logger = logging.getLogger("peer.engine")

PENDING_KEYS = "pending_keys"
USER_WRAPS = "user_wraps"  # {user id hex: newest epoch this device wrapped for that user}
WRAP_CHECK_INTERVAL_MS = 60_000
# The relay's answers to a key_epoch entry that lost a race with another chain entry.
CHAIN_RACE_CODES = frozenset({"fork", "gap", "broken_link", "chain_head"})


@dataclass(frozen=True, slots=True)
class Rotation:
    """What starting an epoch did: the new epoch, how many devices and member users got a wrap."""

    epoch: int
    wrapped: int
    users: int = 0


def saved_ring(store: ShareStore, chain: MembershipChain) -> KeyRing | None:
    """The newest ring this device saved (a pending one included) that the chain confirms."""
    best: KeyRing | None = None
    for keys in (store.epoch_keys(), store.get(PENDING_KEYS) or []):
        if not keys:
            continue
        try:
            ring = KeyRing(chain.share_id, tuple(bytes(k) for k in keys))
            ring.check_against(chain)
        except ProtocolError:
            continue  # a pending ring whose key_epoch never reached the chain
        if best is None or ring.latest_epoch > best.latest_epoch:
            best = ring
    return best


async def fetch_ring(
    link: RelayLink,
    share: str,
    device: CertifiedDevice,
    chain: MembershipChain,
    user: UserIdentity | None = None,
) -> tuple[KeyRing | None, str]:
    """A ring covering the chain's current epoch from the mailbox, or None and why not.

    With ``user`` (this device holds its user key), wraps addressed to the user are tried too.
    """
    need = chain.current_epoch
    reasons = []
    for item in await link.key_wraps(share):
        try:
            wrap = EpochKeyWrap.decode(item.wrap)
            sender = DeviceCertificate.decode(item.sender)
            if user is not None and wrap.recipient == user.user_id:
                ring = open_user_keys(wrap, user, sender, chain, need_epoch=need)
            elif wrap.recipient != device.device_id and wrap.recipient == (
                device.certificate.user_id
            ):
                continue  # our user's wrap, but this device does not hold the user key
            else:
                ring = open_keys(wrap, device.identity, sender, chain, need_epoch=need)
        except ProtocolError as exc:
            logger.warning("share %s: a key wrap from the relay is refused: %s", share, exc)
            reasons.append(exc.message)
            continue
        return ring, ""
    if reasons:
        return None, f"the key wraps offered for epoch {need} were refused: {reasons[0]}"
    return None, f"waiting for an owner's device to hand this device the key of epoch {need}"


async def start_epoch(
    store: ShareStore,
    chain: MembershipChain,
    ring: KeyRing,
    device: CertifiedDevice,
    link: RelayLink,
    *,
    clock: Clock,
    rng: RandomSource,
) -> Rotation:
    """Write the next key epoch into ``chain`` (which must be the relay's head) and wrap it.

    Raises ``RelayRefused`` when the relay refuses the entry (another entry won the race: the
    caller refreshes the chain and looks again).
    """
    share = chain.share_id.hex()
    rotated = ring.rotated(rng.bytes)
    store.set(PENDING_KEYS, list(rotated.epoch_keys))
    entry = make_key_epoch(chain, device, rotated.epoch().key_hash, clock.now_ms())
    await link.extend_chain(share, entry.encode())
    chain.append(entry)
    store.add_chain_entries(entry.height, [entry.encode()])
    store.set_epoch_keys(rotated.epoch_keys)
    store.set(PENDING_KEYS, None)
    wrapped = await wrap_for_members(link, chain, rotated, device, rng)
    users = await wrap_for_users(store, link, chain, rotated, device, rng)
    logger.info(
        "share %s: key epoch %d started, %d device(s) wrapped", share, rotated.latest_epoch, wrapped
    )
    return Rotation(rotated.latest_epoch, wrapped, users)


async def wrap_for_members(
    link: RelayLink,
    chain: MembershipChain,
    ring: KeyRing,
    device: CertifiedDevice,
    rng: RandomSource,
) -> int:
    """Wrap ``ring`` for every member device the relay lists without a wrap of its epoch.

    The relay's list is checked against the chain (a certificate of a member's user, a device not
    revoked): the relay cannot make us wrap for a device that is not a member's.
    """
    share = chain.share_id.hex()
    wraps = []
    for listed in await link.member_devices(share):
        if listed.wrapped_epoch is not None and listed.wrapped_epoch >= ring.latest_epoch:
            continue
        try:
            certificate = DeviceCertificate.decode(listed.certificate).verify()
        except ProtocolError as exc:
            logger.warning(
                "share %s: the relay lists a device certificate that fails: %s", share, exc
            )
            continue
        if certificate.device_id == device.device_id:
            continue
        if chain.role_at(certificate.user_id) is None or chain.is_revoked(certificate.device_id):
            continue
        wraps.append(wrap_keys(ring, device.identity, certificate, rng.bytes).encode())
    if wraps:
        await link.put_key_wraps(share, wraps)
    return len(wraps)


async def wrap_for_users(
    store: ShareStore,
    link: RelayLink,
    chain: MembershipChain,
    ring: KeyRing,
    device: CertifiedDevice,
    rng: RandomSource,
) -> int:
    """Wrap ``ring`` for every member user of the chain this device has not wrapped it for.

    The user keys come from the chain itself, so the relay has no say in whom we wrap for; a
    removed user is no member any more and gets nothing for a later epoch.
    """
    done: dict[str, int] = dict(store.get(USER_WRAPS) or {})
    wraps, wrapped = [], {}
    for user_id in chain.members():
        if done.get(user_id.hex(), -1) >= ring.latest_epoch:
            continue
        user_key = chain.user_key(user_id)
        if user_key is None:
            continue
        wraps.append(wrap_keys_for_user(ring, device.identity, user_key, rng.bytes).encode())
        wrapped[user_id.hex()] = ring.latest_epoch
    if wraps:
        await link.put_key_wraps(chain.share_id.hex(), wraps)
        store.set(USER_WRAPS, done | wrapped)
    return len(wraps)


class KeyKeeper:
    """One share's keys on this device during sync passes (see the module docs)."""

    def __init__(self, share: str, link: RelayLink, clock: Clock) -> None:
        self.share = share
        self.link = link
        self.clock = clock
        self.waiting = ""  # why this device cannot write yet (empty: it can)
        self.rotations = 0
        self.wrap_check_interval_ms = WRAP_CHECK_INTERVAL_MS
        self._wraps_checked_ms: int | None = None
        self._wraps_checked_height = -1
        # Whether the chain must be fetched on the next pass whatever the log page says: on start,
        # and after a refusal that a stale chain may explain (see ``keep``).
        self.chain_stale = True

    async def refresh_chain(self, replica: ShareReplica) -> None:
        replica.update_chain(await self.link.chain(self.share, replica.chain.height + 1))

    def holds_current_key(self, replica: ShareReplica) -> bool:
        """Whether the replica has the key of its chain's current epoch (no relay asked)."""
        if replica.crypto.ring.latest_epoch >= replica.chain.current_epoch:
            return True
        self.waiting = (
            f"waiting for the key of epoch {replica.chain.current_epoch} (it comes through the "
            "relay, which cannot be reached)"
        )
        return False

    async def adopt(self, replica: ShareReplica) -> bool:
        """Make sure the replica holds the key of the chain's current epoch; False if it can't."""
        chain = replica.chain
        if replica.crypto.ring.latest_epoch >= chain.current_epoch:
            self.waiting = ""
            return True
        ring = saved_ring(replica.store, chain)
        reason = ""
        if ring is None or ring.latest_epoch < chain.current_epoch:
            ring, reason = await fetch_ring(self.link, self.share, replica.device, chain)
        if ring is None:
            self.waiting = reason
            return False
        replica.set_keys(ring)
        replica.store.set(PENDING_KEYS, None)
        logger.info("share %s: adopted the key of epoch %d", self.share, ring.latest_epoch)
        self.waiting = ""
        return True

    async def keep(
        self, replica: ShareReplica, rng: RandomSource, relay_height: int | None = None
    ) -> bool:
        """A pass's key work: catch up the chain and the keys; an owner device rotates when due
        and wraps for devices that lack the current epoch. False: wait, publish nothing.

        ``relay_height`` is the chain height the relay's log page gave this pass (None: unknown).
        The chain is fetched only when it is above ours, on start, or after a refusal: most
        passes find it unchanged, and asking costs a round trip each.
        """
        if relay_height is None or self.chain_stale or relay_height > replica.chain.height:
            await self.refresh_chain(replica)
            self.chain_stale = False
        if not await self.adopt(replica):
            return False
        if replica.chain.role_at(replica.device.certificate.user_id) is not Role.OWNER:
            return True
        if replica.chain.rotation_due():
            try:
                await start_epoch(
                    replica.store,
                    replica.chain,
                    replica.crypto.ring,
                    replica.device,
                    self.link,
                    clock=self.clock,
                    rng=rng,
                )
            except RelayRefused as exc:
                if exc.code not in CHAIN_RACE_CODES:
                    raise
                # Another owner device wrote first; its epoch arrives with the chain.
                replica.store.set(PENDING_KEYS, None)
                await self.refresh_chain(replica)
                return await self.adopt(replica)
            replica.set_keys(KeyRing(replica.chain.share_id, tuple(replica.store.epoch_keys())))
            self.rotations += 1
            self._wraps_checked_ms = self.clock.now_ms()
            self._wraps_checked_height = replica.chain.height
            return True
        now = self.clock.now_ms()
        if (
            self._wraps_checked_ms is None
            or replica.chain.height != self._wraps_checked_height
            or now - self._wraps_checked_ms >= self.wrap_check_interval_ms
        ):
            await wrap_for_members(
                self.link, replica.chain, replica.crypto.ring, replica.device, rng
            )
            await wrap_for_users(
                replica.store, self.link, replica.chain, replica.crypto.ring, replica.device, rng
            )
            self._wraps_checked_ms = now
            self._wraps_checked_height = replica.chain.height
        return True
