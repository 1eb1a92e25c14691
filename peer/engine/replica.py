"""One share's replicated state on this device: chain, keys, folder tree, envelopes in and out.

Receiving runs every check a replica makes, in this order: the envelope decodes; the chain knows
the height it names (else the chain is fetched first); its payload opens with the epoch's
metadata key; the signer's certificate inside is issued by a user key the chain knows; the
signature, the signer's authority (role, epoch, cutoffs) and continuity with the device's last
envelope hold; and the CRDT accepts the update. Anything that fails is not applied and is
reported; the device's tip still advances past an envelope the CRDT refused, so every replica
reaches the same verdict and the log keeps flowing.

Sending: a local CRDT update is sealed into the device's next envelope, and the counter, the
envelope (outbox) and the update are committed (fsynced) together before anything leaves.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from crdt.errors import UpdateRefused
from crdt.identity import ReplicaIdentity, replica_for
from crdt.tree import FolderTree, LocalUpdate, ReceiveStatus
from peer.device.store import ShareStore, StoredUpdate
from peer.engine.keys import ShareCrypto
from peer.engine.lanstore import LanStore
from peer.engine.payload import UpdatePayload
from peer.engine.retract import Retraction, retract_invalid, seen_past_limit, write_limits
from peer.engine.warm import (
    SAVE_EVERY_UPDATES,
    read_snapshot,
    snapshot_path,
    stale_reason,
    write_snapshot,
)
from peer.errors import IntegrityError, ShareError
from peer.remote.link import AppendAck
from protocol.chain import ZERO_HASH, ChainEntry, EntryKind, MembershipChain, Role, verify_chain
from protocol.envelope import (
    Envelope,
    EnvelopeTip,
    open_envelope,
    seal_envelope,
    verify_envelope,
)
from protocol.errors import CounterReplay, ProtocolError, UnknownHeight
from protocol.keys import CertifiedDevice, DeviceCertificate
from protocol.keyschedule import KeyRing
from seams import RandomSource

logger = logging.getLogger("peer.engine")

# Chain entries after which envelopes held here may be invalid: a removal, a revocation, and a
# writer's demotion (the one change_role that carries cutoffs).
_ENDS_WRITING = frozenset({EntryKind.REMOVE_USER, EntryKind.REVOKE_DEVICE, EntryKind.CHANGE_ROLE})


@dataclass(frozen=True, slots=True)
class Rejected:
    seq: int
    device: bytes
    counter: int
    reason: str


@dataclass
class ApplyReport:
    applied: int = 0
    own: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    needs_chain: bool = False
    needs_keys: bool = False  # stopped before an envelope of an epoch this device has no key for
    # Envelopes taken back out because the relay holds others at their counters (a fork that
    # lost), and how many of them were ours: the tree was rebuilt without them.
    dropped: int = 0
    dropped_own: int = 0
    # The blocks the envelopes applied from LAN peers name: the relay may not hold them yet.
    blocks: set[bytes] = field(default_factory=set)


class ShareReplica:
    def __init__(
        self,
        store: ShareStore,
        device: CertifiedDevice,
        chain: MembershipChain,
        crypto: ShareCrypto,
        rng: RandomSource,
    ) -> None:
        self.store = store
        self.device = device
        self.chain = chain
        self.crypto = crypto
        self.rng = rng
        self.share_id = chain.share_id
        self.identity = ReplicaIdentity(device.device_id, device.identity.install_id)
        self.tree = FolderTree(self.identity)
        self.installs: dict[bytes, bytes] = {}  # device → install of its last envelope
        self.snapshot = snapshot_path(store.path)
        self.saved_at = 0  # the store position (updates.ord) the saved tree covers
        self.warm = False  # whether open() started from the saved tree
        self.envelopes = LanStore(store.db)  # what LAN peers are served, and the relay caught up
        # Whether the chain may have made envelopes held here invalid (see peer.engine.retract):
        # checked on open, since a crash can come between storing an entry and taking back.
        self.retract_due = True
        # Device → the highest counter a valid envelope of it can carry (its writing ended);
        # None: to be worked out again (the chain grew, or a device's certificate came).
        self._limits: dict[bytes, int] | None = None
        self._limits_of: set[bytes] = set()  # the devices whose certificates _limits covers

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, store: ShareStore, device: CertifiedDevice, rng: RandomSource) -> ShareReplica:
        try:
            chain = verify_chain(ChainEntry.decode(e) for e in store.chain_entries())
            ring = KeyRing(chain.share_id, tuple(store.epoch_keys()))
            ring.check_against(chain)
        except ProtocolError as exc:
            raise ShareError(
                f"the saved state of share in {store.path.parent} does not verify: {exc}",
                hint="remove that share directory and join the share again",
            ) from exc
        replica = cls(store, device, chain, ShareCrypto(ring), rng)
        if not replica._warm_start():
            replica._replay()
        replica._note_install()
        return replica

    def rebuild_tree(self) -> None:
        """The tree again from the stored updates (after some were dropped)."""
        self._replay()

    def _replay(self) -> None:
        self.tree = FolderTree(self.identity)
        self.installs.clear()
        self._apply_stored(self.store.updates())
        self.saved_at = 0  # nothing saved matches: the next checkpoint saves

    def _warm_start(self) -> bool:
        """Load the saved tree and apply what was stored since; False if it cannot be used."""
        loaded = read_snapshot(self.snapshot, self.identity)
        if loaded is None:
            return False
        tree, covered = loaded
        keys = self.store.update_keys()
        stale = stale_reason(tree, keys, covered)
        if stale is not None:
            logger.info("saved folder tree of share %s not used: %s", self.share_id.hex(), stale)
            return False
        self.tree = tree
        for _, device, install, _ in keys:
            self.installs[device] = install
        self._apply_stored(self.store.updates_after(covered))
        self.saved_at = covered
        self.warm = True
        return True

    def _apply_stored(self, updates: Iterable[StoredUpdate]) -> None:
        for u in updates:
            identity = ReplicaIdentity(u.device, u.install)
            try:
                self.tree.receive(identity, u.seq, u.seen, u.body)
            except UpdateRefused as exc:  # pragma: no cover - only accepted updates are stored
                logger.error(
                    "stored update %s#%d refused on replay: %s", u.device.hex(), u.seq, exc
                )
            self.installs[u.device] = u.install

    def checkpoint(self, *, every: int = SAVE_EVERY_UPDATES) -> bool:
        """Save the tree for the next start when ``every`` updates were stored since the last
        save (``every=1``: whenever anything changed, as on shutdown). Call it where no update
        is half-recorded: after a pass, on close. Whether it saved."""
        last = self.store.last_update_ord()
        if last - self.saved_at < every:
            return False
        try:
            write_snapshot(self.snapshot, self.tree, last)
        except OSError as exc:
            # Only the next start is slower for it: it replays instead.
            logger.warning("cannot save the folder tree of share %s: %s", self.share_id.hex(), exc)
            return False
        self.saved_at = last
        return True

    def _note_install(self) -> None:
        stored_install = self.store.get("install")
        if stored_install is not None and stored_install != self.identity.install_id:
            # Restored from a backup or copied: we write as a new replica from now on, and our
            # envelope counter continues after whatever the relay already holds from us.
            self.store.set("restored", True)
        self.store.set("install", self.identity.install_id)

    # -- state -----------------------------------------------------------------------------------

    @property
    def role(self) -> Role | None:
        return self.chain.role_at(self.device.certificate.user_id)

    @property
    def counter(self) -> int:
        return int(self.store.get("counter", 0))

    @property
    def cursor(self) -> int:
        return int(self.store.get("cursor", 0))

    def vector_at(self, time_ms: int) -> dict[str, int]:
        """The CRDT updates the share held at ``time_ms``: by the relay's append times, which
        every device shares whatever its own clock says; an update no relay has ordered yet
        (seen only on the LAN) counts from when this device received or wrote it."""
        vector: dict[str, int] = {}
        for u in self.store.updates():
            if u.ordered_ms <= time_ms:
                replica = replica_for(u.device, u.install)
                vector[replica] = max(vector.get(replica, 0), u.seq)
        return vector

    def tips_vector(self) -> dict[bytes, int]:
        return {d: c for d, (c, _) in self.store.tips().items()}

    def update_chain(self, entries: list[bytes]) -> None:
        """Append entries fetched from the relay (verified one by one)."""
        start = self.chain.height + 1
        added: list[bytes] = []
        for raw in entries:
            entry = ChainEntry.decode(raw)
            if entry.height < start:
                continue
            if self.chain.append(entry):
                added.append(raw)
                self._limits = None
                kind = EntryKind(entry.kind)
                if kind in _ENDS_WRITING and (entry.cutoffs or kind is EntryKind.REMOVE_USER):
                    self.retract_due = True
        if added:
            self.store.add_chain_entries(start, added)

    def retract_if_due(self, disk_path: Callable[[str], str]) -> Retraction | None:
        """Take back the envelopes held here that the chain has made invalid since the last
        look (:mod:`peer.engine.retract`). Call it where no pass step holds tree entries or
        index rows: before applying envelopes, with nothing being published."""
        if not self.retract_due:
            return None
        self.retract_due = False
        return retract_invalid(self, disk_path)

    def set_keys(self, ring: KeyRing) -> None:
        ring.check_against(self.chain)
        if ring.latest_epoch >= self.crypto.ring.latest_epoch:
            self.store.set_epoch_keys(ring.epoch_keys)
            self.crypto = ShareCrypto(ring)

    # -- receiving -------------------------------------------------------------------------------

    def apply_page(
        self, entries: Iterable[tuple[int, bytes, int | None]], now_ms: int
    ) -> ApplyReport:
        """Apply log entries (seq, envelope, the relay's append time) in order; stops early
        (``needs_chain``) when the chain is behind."""
        report = ApplyReport()
        with self.store.transaction():
            for seq, body, appended_ms in entries:
                try:
                    envelope = Envelope.decode(body)
                except ProtocolError as exc:
                    report.rejected.append(Rejected(seq, b"", 0, f"undecodable envelope: {exc}"))
                    self.store.set("cursor", seq)
                    continue
                if envelope.header.height > self.chain.height:
                    report.needs_chain = True
                    return report
                if self._lacks_key(envelope):
                    report.needs_keys = True
                    return report
                outcome = self._apply_one(seq, envelope, now_ms, appended_ms, report)
                if outcome == "own":
                    report.own += 1
                elif outcome == "applied":
                    report.applied += 1
                elif outcome is not None:
                    report.rejected.append(
                        Rejected(seq, envelope.header.device, envelope.header.counter, outcome)
                    )
                self.store.set("cursor", seq)
        return report

    def apply_lan(
        self, envelopes: Iterable[Envelope], now_ms: int
    ) -> tuple[ApplyReport, list[Envelope]]:
        """Apply envelopes a LAN peer sent, with every check a relay envelope gets; the relay
        cursor stays. Returns the report and the envelopes to try again later (their chain
        height, or an earlier envelope of their device, is not here yet)."""
        report = ApplyReport()
        later: list[Envelope] = []
        ordered = sorted(envelopes, key=lambda e: (e.header.device, e.header.counter))
        with self.store.transaction():
            for envelope in ordered:
                header = envelope.header
                if header.height > self.chain.height:
                    report.needs_chain = True
                    later.append(envelope)
                    continue
                limit = self._write_limits().get(header.device)
                if limit is not None and header.counter > limit:
                    # Refused whenever it comes: never kept waiting for its predecessor.
                    reason = "past the last counter the membership chain allows this device"
                    report.rejected.append(Rejected(0, header.device, header.counter, reason))
                    continue
                last = self.store.tips().get(header.device)
                if header.counter > (last[0] if last is not None else 0) + 1:
                    later.append(envelope)  # causal order: its predecessor is still on the way
                    continue
                if self._lacks_key(envelope):
                    later.append(envelope)  # its epoch's key comes from the relay's mailbox
                    continue
                outcome = self._apply_one(None, envelope, now_ms, None)
                if outcome == "applied":
                    report.applied += 1
                    report.blocks.update(header.blocks)
                elif outcome not in (None, "own"):
                    report.rejected.append(Rejected(0, header.device, header.counter, outcome))
        return report, later

    def note_own_appended(self, bodies: Sequence[bytes], ack: AppendAck, now_ms: int) -> bool:
        """Our envelopes the relay just appended, when they directly follow the cursor: they are
        recorded as a log read would record them (their place and append time) and the cursor
        moves past them, so nothing brings them back down, and their notification wakes no pass.
        Anything else (resends, another device's entries in between, an old relay) is left to the
        next log read. Whether the cursor moved."""
        seqs = ack.seqs
        if (
            ack.appended_ms is None
            or ack.appended != len(bodies)
            or len(seqs) != len(bodies)
            or not seqs
            or seqs[0] != self.cursor + 1
            or any(b != a + 1 for a, b in itertools.pairwise(seqs))
        ):
            return False
        with self.store.transaction():
            for seq, body in zip(seqs, bodies, strict=True):
                if self._apply_one(seq, Envelope.decode(body), now_ms, ack.appended_ms) != "own":
                    raise ShareError(f"envelope {seq} the relay acknowledged is not this device's")
                self.store.set("cursor", seq)
        return True

    def _lacks_key(self, envelope: Envelope) -> bool:
        """Written under an epoch the chain has and this device has no key for yet: wait for the
        key (refusing it would skip it for good). A wrong epoch is refused as usual."""
        epoch = envelope.header.epoch
        return epoch > self.crypto.ring.latest_epoch and epoch == self.chain.epoch_at(
            envelope.header.height
        )

    def _apply_one(
        self,
        seq: int | None,
        envelope: Envelope,
        now_ms: int,
        appended_ms: int | None,
        report: ApplyReport | None = None,
    ) -> str | None:
        """``seq`` is the relay's sequence, None for an envelope a LAN peer sent."""
        header = envelope.header
        tips = self.store.tips()
        last = tips.get(header.device)
        if header.device == self.device.device_id and header.counter <= self.counter:
            if last is None or last[0] < header.counter:
                self.store.set_tip(header.device, header.counter, envelope.envelope_hash)
            self._note_relay_place(envelope, seq, appended_ms)
            return "own"
        if last is not None and header.counter <= last[0]:
            held = self._held_hash(header.device, header.counter, last)
            if held is None or held == envelope.envelope_hash:
                # Seen before (a resend, delivered twice, or first over the LAN).
                if seq is not None:  # the relay holds it: nobody needs to forward it any more
                    self.envelopes.mark_relayed([(header.device, header.counter)])
                self._note_relay_place(envelope, seq, appended_ms)
                return None
            # Another envelope of this device holds that counter here: a copy of the device
            # restored from a backup (or cloned) wrote it again, and the two lines fork.
            if seq is None:
                # Both came over the LAN: the one applied first stays until the relay, which
                # takes only one of them, shows which line the share goes on with.
                return (
                    f"another envelope of this device at counter {header.counter} was applied "
                    "here first (a fork; the relay decides)"
                )
            refused = self._take_relay_line(envelope, last, report)
            if refused is not None:
                return refused
            last = self.store.tips().get(header.device)
        invalid = None if seq is not None else seen_past_limit(header.seen, self._write_limits())
        if invalid is not None:
            # It saw an envelope a removal made invalid (the relay's log is authoritative and
            # never holds such a one: only a LAN peer brings it); its author writes it again.
            return (
                f"the envelope has seen envelopes of device {invalid.hex()[:16]} past the last "
                "one the membership chain allows"
            )
        try:
            tip = None if last is None else EnvelopeTip(last[0], last[1])
            payload = self._verified_payload(envelope, tip)
        except CounterReplay:
            return None
        except UnknownHeight:
            return "the envelope names a chain height this device has not verified yet"
        except (ProtocolError, IntegrityError) as exc:
            return f"envelope refused: {exc}"
        self.store.set_tip(header.device, header.counter, envelope.envelope_hash)
        self.store.add_certificate(header.device, payload.certificate)
        if header.device not in self._limits_of:
            self._limits = None  # a device not covered yet: it may be one whose writing ended
        self.envelopes.add_envelope(
            header.device, header.counter, envelope.encode(), relayed=seq is not None
        )
        if header.device == self.device.device_id:
            # Ours, written before a restore from backup (or before our state was lost): apply it
            # like any other, and continue our counter after it.
            self._advance_own(header.counter, envelope.envelope_hash)
        identity = ReplicaIdentity(header.device, payload.install)
        try:
            result = self.tree.receive(identity, payload.seq, payload.seen, payload.update)
        except UpdateRefused as exc:
            return f"update refused by the folder tree: {exc.reason}"
        self.installs[header.device] = payload.install
        if result.status is not ReceiveStatus.DUPLICATE:
            self.store.record_update(
                StoredUpdate(
                    header.device,
                    payload.install,
                    payload.seq,
                    payload.seen,
                    payload.update,
                    seq,
                    now_ms,
                    appended_ms,
                )
            )
        return "applied"

    def _held_hash(self, device: bytes, counter: int, tip: tuple[int, bytes]) -> bytes | None:
        """The hash of the device's envelope this replica applied at ``counter`` (at or below
        its tip); None if not kept (applied before envelopes were kept for LAN peers)."""
        if counter == tip[0]:
            return tip[1]
        if counter == 0:
            return ZERO_HASH
        body = self.envelopes.envelope(device, counter)
        return None if body is None else Envelope.decode(body).envelope_hash

    def _take_relay_line(
        self, envelope: Envelope, last: tuple[int, bytes], report: ApplyReport | None
    ) -> str | None:
        """The relay serves ``envelope`` where this replica applied another one of its device
        (received over the LAN only: the relay holds a single envelope per counter). The
        relay's line is the share's: once the envelope proves to be the device's and to follow
        the envelope before the fork as applied here, the line it replaces is taken back out
        (see :meth:`drop_lost_lines`). A refusal's reason, or None."""
        header = envelope.header
        before = self._held_hash(header.device, header.counter - 1, last)
        if before != header.prev:
            return (
                f"fork at counter {header.counter} of this device reaches back past envelopes "
                "this replica holds no copy of; not applied"
            )
        try:
            tip = None if header.counter == 1 else EnvelopeTip(header.counter - 1, header.prev)
            self._verified_payload(envelope, tip)
        except UnknownHeight:
            return "the envelope names a chain height this device has not verified yet"
        except (ProtocolError, IntegrityError) as exc:
            return f"envelope refused: {exc}"
        dropped, own = self.drop_lost_lines({header.device: header.counter})
        logger.warning(
            "share %s: device %s forked at counter %d (restored from a backup?); the relay "
            "holds the other envelope: %d envelope(s) taken back out, %d of them ours",
            self.share_id.hex(),
            header.device.hex()[:16],
            header.counter,
            dropped,
            own,
        )
        if report is not None:
            report.dropped += dropped
            report.dropped_own += own
        return None

    def drop_lost_lines(self, lines: Mapping[bytes, int]) -> tuple[int, int]:
        """Take each device's envelopes from its counter in ``lines`` on back out of this
        replica, with every envelope not at the relay that has seen one of them (ours unsent
        included): the relay will never hold them (it holds other envelopes at those counters,
        a removal made them invalid, or they name updates nobody else will have), and anything
        sealed on top of them would carry updates that depend on what no other replica
        applies. The tree is rebuilt from the updates left; ours come back as local changes
        (the caller rebases or forgets the bases they made). Returns (envelopes dropped, of
        them ours)."""
        own = self.device.device_id
        lost = dict(lines)
        rows = self.envelopes.unrelayed(own, limit=None)
        rows += [(own, c, raw) for c, raw in self.store.outbox()]
        grew = True
        while grew:  # what saw a lost envelope is lost too, whoever wrote it
            grew = False
            for d, c, body in rows:
                if c >= lost.get(d, c + 1):
                    continue
                seen = Envelope.decode(body).header.seen
                if any(seen.get(ld, 0) >= lc for ld, lc in lost.items()):
                    lost[d] = c
                    grew = True
        dropped = own_dropped = 0
        for d, c in lost.items():
            if d == own:
                own_dropped = self.abandon_unsent(from_counter=c)
                dropped += own_dropped
                continue
            bodies = self.envelopes.envelopes_from(d, c)
            for body in bodies:
                self._forget_updates_of(Envelope.decode(body))
            if bodies:
                first = Envelope.decode(bodies[0]).header
                if first.counter > 1:
                    self.store.set_tip(d, first.counter - 1, first.prev)
                else:
                    self.store.forget_tip(d)
            self.envelopes.forget_from(d, c)
            dropped += len(bodies)
        self._replay()
        return dropped, own_dropped

    def _payload_of(self, envelope: Envelope) -> UpdatePayload:
        return UpdatePayload.decode(
            open_envelope(envelope, self.crypto.metadata_key(envelope.header.epoch))
        )

    def _verified_payload(self, envelope: Envelope, tip: EnvelopeTip | None) -> UpdatePayload:
        """The opened payload of an envelope checked against its certificate, the chain and
        ``tip`` (its device's envelope before it, as applied here)."""
        payload = self._payload_of(envelope)
        verify_envelope(envelope, DeviceCertificate.decode(payload.certificate), self.chain, tip)
        return payload

    def _forget_updates_of(self, envelope: Envelope) -> None:
        payload = self._payload_of(envelope)
        self.store.forget_update(envelope.header.device, payload.install, payload.seq)

    def _write_limits(self) -> dict[bytes, int]:
        if self._limits is None:
            certificates = {
                d: DeviceCertificate.decode(raw) for d, raw in self.store.certificates().items()
            }
            self._limits = write_limits(self.chain, certificates)
            self._limits_of = set(certificates)
        return self._limits

    def _note_relay_place(
        self, envelope: Envelope, seq: int | None, appended_ms: int | None
    ) -> None:
        """Record where and when the relay put an update this device already held.

        Only a payload that opens under the share's key counts (the relay cannot make one), so
        a relay can misstate times, as it could anyway, but not attach them to another update.
        """
        if seq is None:
            return  # from a LAN peer: the relay has not placed it (yet)
        try:
            payload = self._payload_of(envelope)
        except (ProtocolError, IntegrityError):
            return
        self.store.set_relay_seq(
            envelope.header.device, payload.install, payload.seq, seq, appended_ms
        )

    def _advance_own(self, counter: int, envelope_hash: bytes) -> None:
        if counter > self.counter:
            self.store.set("counter", counter)
            self.store.set("prev", envelope_hash)

    def abandon_unsent(self, from_counter: int = 0) -> int:
        """After a fork: drop our unsent envelopes (those from ``from_counter`` on) and the CRDT
        updates inside them.

        Our counter goes back to the envelope before the first one dropped (after a refusal,
        the last one the relay holds from this device); the relay's envelopes after it
        (written by the other copy of this device) arrive with the next pull, and the tree is
        rebuilt so that it no longer holds the dropped updates (the caller reopens the replica,
        or :meth:`drop_lost_lines` replays). Returns how many envelopes were dropped.
        """
        outbox = [(c, raw) for c, raw in self.store.outbox() if c >= from_counter]
        if not outbox:
            return 0
        first = Envelope.decode(outbox[0][1]).header
        with self.store.transaction():
            for _, raw in outbox:
                self._forget_updates_of(Envelope.decode(raw))
            self.store.drop_outbox_from(first.counter)
            # Peers must never be served them: other envelopes will take these counters.
            self.envelopes.forget_from(self.device.device_id, first.counter)
            self.store.set("counter", first.counter - 1)
            self.store.set("prev", first.prev)
            if first.counter > 1:
                self.store.set_tip(self.device.device_id, first.counter - 1, first.prev)
            else:
                self.store.forget_tip(self.device.device_id)
        return len(outbox)

    # -- sending ---------------------------------------------------------------------------------

    def seal(self, update: LocalUpdate, blocks: Iterable[bytes], now_ms: int) -> int:
        """Seal ``update`` as our next envelope and commit it with the counter; the counter."""
        if self.role not in (Role.OWNER, Role.EDITOR):
            raise ShareError(
                "this device's user may only read this share",
                hint="ask an owner to make you an editor to publish changes",
            )
        counter = self.counter + 1
        prev = self.store.get("prev", ZERO_HASH) if counter > 1 else ZERO_HASH
        epoch = self.chain.current_epoch
        payload = UpdatePayload(
            self.identity.install_id,
            update.seq,
            dict(update.seen),
            update.update,
            self.device.certificate.encode(),
        )
        seen = {d: c for d, c in self.tips_vector().items() if d != self.device.device_id}
        envelope = seal_envelope(
            self.device.identity,
            share=self.share_id,
            epoch=epoch,
            height=self.chain.height,
            counter=counter,
            prev=prev,
            seen=seen,
            blocks=blocks,
            update=payload.encode(),
            metadata_key=self.crypto.metadata_key(epoch),
            random_bytes=self.rng.bytes,
        )
        with self.store.transaction():
            self.store.queue_envelope(counter, envelope.encode())
            self.envelopes.add_envelope(
                self.device.device_id, counter, envelope.encode(), relayed=False
            )
            self.store.set("counter", counter)
            self.store.set("prev", envelope.envelope_hash)
            self.store.set_tip(self.device.device_id, counter, envelope.envelope_hash)
            self.store.record_update(
                StoredUpdate(
                    self.device.device_id,
                    self.identity.install_id,
                    update.seq,
                    dict(update.seen),
                    update.update,
                    None,
                    now_ms,
                )
            )
        return counter
