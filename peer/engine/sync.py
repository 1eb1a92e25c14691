"""One share's sync pass: pull from the relay, publish local changes, make the disk match the tree.

A pass is a reconciliation, so it is right after any crash or restart: the local index
(``peer.local``, in the share's state database) records per path what the disk looked like and
what was last synced there (the *base*). The scanner compares the disk with it — an unchanged
file costs one stat, a racy one is re-hashed, one still being written waits — and records what
changed; a tree entry that differs from its base is a remote change; where both changed, the
local file is never overwritten — it becomes a conflicted copy. Order per pass:

1. pull: catch up from the cursor, verify and apply envelopes to the folder tree;
2. guards: the folder's marker must be there (a missing or unmounted folder pauses the share),
   then the scan (the whole folder, or only the subtrees the watcher saw change), and a mass
   deletion pauses the share instead of propagating;
3. local → tree: what the index holds as not synced (new, changed, moved, deleted) becomes tree
   operations, each sealed into an envelope after its blocks are at the relay;
4. tree → disk: moves as moves, deletions to the local trash, new versions downloaded, verified
   and written atomically (guarded against a concurrent local change);
5. the outbox is sent (resent after a crash: the relay answers an identical resend with its
   original sequence).
"""

from __future__ import annotations

from collections.abc import Callable

from crdt.view import EntryKind
from peer.device.store import ShareStore
from peer.engine.apply import Applier
from peer.engine.content import RelayBlocks
from peer.engine.lanpass import LanPass
from peer.engine.lanshare import ShareLan
from peer.engine.lanstore import LanStore
from peer.engine.parts import (
    APPEND_BATCH,
    CONFLICT_MARK,
    MARKER,
    PassReport,
    SyncOptions,
    logger,
)
from peer.engine.publish import Publisher
from peer.engine.rekey import KeyKeeper
from peer.engine.replica import ShareReplica
from peer.engine.state import ShareState, ShareStatus
from peer.errors import RelayRefused, RelayUnreachable, ShareError
from peer.fs import (
    FileKind,
    FileSystem,
    FsError,
)
from peer.local.ignore import IgnoreRules
from peer.local.index import SyncState
from peer.local.names import NameRules
from peer.local.scan import ChangeKind, Scanner, ScanResult, minimal_roots, record_scan
from peer.remote.link import RelayLink, relay_fail_fast
from protocol.ids import short_id
from protocol.keys import DeviceCertificate
from seams import Clock, Executor

# The longest a pass goes without reading the relay's log while notifications say it is quiet.
QUIET_READ_MAX_MS = 30_000


class ShareSync(LanPass, Publisher, Applier):
    def __init__(
        self,
        replica: ShareReplica,
        fs: FileSystem,
        link: RelayLink,
        *,
        clock: Clock,
        executor: Executor,
        options: SyncOptions | None = None,
        name_rules: NameRules | None = None,
    ) -> None:
        self.replica = replica
        self.store: ShareStore = replica.store
        self.fs = fs
        self.link = link
        self.clock = clock
        self.executor = executor
        self.options = options or SyncOptions()
        self.rules = name_rules or NameRules.for_platform()
        self.share = replica.share_id.hex()
        self.blocks = RelayBlocks(link, self.share, executor)
        self.blocks.on_unreachable = self._relay_failed
        self.lan = ShareLan(
            lambda: self.replica,
            LanStore(self.store.db),
            fs,
            cache_dir=self.store.path.parent / "lan-cache",
        )
        self.relay_down = None
        self.keys = KeyKeeper(self.share, link, clock)
        # The chain height the relay's last log page of this pass gave (None: no page, or a relay
        # too old to say): the key work fetches the chain only when it moved.
        self.relay_chain_height: int | None = None
        self._last_read_ms: int | None = None  # when a pass last read the relay's log
        self.state = ShareState.IDLE
        self.reason = ""
        self.override_guard = False
        self.notice = ""  # a lasting condition that does not stop syncing (no file watches)
        self.apply_pending = True  # the first pass after a start compares everything
        # As of the last pass (read from the folder then); the watcher filters events with it.
        self.ignore = IgnoreRules.parse("", case_insensitive=fs.case_insensitive)
        self.index = self.store.index
        self.scanner = Scanner(
            fs,
            self.index,
            executor=executor,
            clock=clock,
            stable_interval_s=self.options.stable_interval_s,
            entry_kept=self._entry_kept,
        )
        # Subtrees the watcher saw change since the last pass; None: scan the whole folder.
        self._scope: set[str] | None = None
        self.watching = False  # the watcher is healthy: a pass may scan only what it saw
        self._report = PassReport()
        self._recorded: set[str] = set()
        # Called with (phase, bytes done, bytes in the phase) as files finish: progress bars.
        self.on_progress: Callable[[str, int, int], None] | None = None

    def _entry_kept(self, disk_path: str, entry_id: str) -> bool:
        """Whether the tree still holds ``entry_id`` at the tree path the index row at
        ``disk_path`` synced it as (the scanner asks of a path back on disk)."""
        entry = self.tree.lookup(self.store.tree_path_of(disk_path))
        return entry is not None and entry.id == entry_id

    # -- the pass --------------------------------------------------------------------------------

    async def run_pass(self) -> PassReport:
        report = PassReport()
        try:
            if not self.lan.active:
                return await self._run_pass(report)
            # With LAN peers the pass has work to do without the relay: a relay call that cannot
            # connect fails at once (not after a minute of retries, while envelopes peers sent
            # wait in the inbox and their authors may go away), and the relay is marked away,
            # so the rest of the pass skips it and the probe wakes the share when it is back.
            with relay_fail_fast():
                return await self._run_pass(report)
        except RelayUnreachable as exc:
            if self.lan.active and self.relay_down is None:
                self._relay_failed(exc)
            raise
        except RelayRefused:
            # A refusal may come from a chain the relay moved past (a role changed, a device
            # revoked): the next pass fetches it whatever the log page says.
            self.keys.chain_stale = True
            raise

    async def _run_pass(self, report: PassReport) -> PassReport:
        self.relay_chain_height = None
        try:
            await self.pull_everything()
            keys_ready = await self._keys_ready()
        except RelayUnreachable:
            await self._scan_offline()
            raise
        self.take_back()  # the key work may have fetched the chain
        if not keys_ready:
            # A new key epoch began and this device has no key for it yet: it may neither
            # publish under the old epoch nor read what is written under the new one.
            report.waiting = self.keys.waiting
            self.state, self.reason = ShareState.SYNCING, self.keys.waiting
            await self._send_to_relay()
            return report
        scan: ScanResult | None = None
        if await self._marker_guard():
            roots = self._take_scope()
            scan = await self.scanner.scan(roots)
            self.ignore = self.scanner.ignore
            if not self._scan_guard(scan):
                scan = None
        if scan is None:
            self.apply_pending = True
            await self._send_to_relay()
            return report
        with self.store.batch():
            await self._record_scan(scan, full=roots == [""])
            await self.publish_local(scan, report)
        await self.push_outbox_to_lan()
        if report.published or self.apply_pending:
            # Otherwise the tree and the disk are as the last pass left them: nothing to do.
            with self.store.batch():
                await self.apply_remote(report)
            self.apply_pending = report.errors > 0
        await self._send_to_relay()
        self.store.set("last_sync_ms", self.clock.now_ms())
        self.state, self.reason = ShareState.IDLE, ""  # past the guards: whatever paused is over
        self.replica.checkpoint()  # a safe point: every update of the pass is recorded
        return report

    async def _keys_ready(self) -> bool:
        """The pass's key work with the relay (see :mod:`peer.engine.rekey`); while the relay is
        away the chain this device has decides whether it holds the current key."""
        if self.relay_down is None:
            try:
                return await self.keys.keep(
                    self.replica, self.replica.rng, self.relay_chain_height
                )
            except RelayUnreachable as exc:
                if not self.lan.active:
                    raise
                self._relay_failed(exc)
        return self.keys.holds_current_key(self.replica)

    async def publish_changes(self, report: PassReport) -> None:
        """Scan and publish local changes only (no pull, no writing to the disk): what a pass
        does between its pull and its apply, for tests that stage who publishes first."""
        scan = await self.scanner.scan([""])
        with self.store.batch():
            await self._record_scan(scan, full=True)
            await self.publish_local(scan, report)

    async def _scan_offline(self) -> None:
        """Without the relay nothing is published, but the index (and `drift status`) learns
        what waits to be; the next pass publishes it."""
        if not await self._marker_guard():
            return
        roots = self._take_scope()
        scan = await self.scanner.scan(roots)
        if self._scan_guard(scan):
            with self.store.batch():
                await self._record_scan(scan, full=roots == [""])
        else:
            self._scope = None  # not recorded: look again next time

    def note_changed(self, paths: frozenset[str], *, full: bool = False) -> None:
        """The watcher saw these paths change (or asks for the periodic full rescan)."""
        if full or not self.watching:
            self._scope = None
        elif self._scope is not None:
            self._scope.update(paths)

    def _take_scope(self) -> list[str]:
        """What this pass scans: the whole folder unless a healthy watcher narrowed it."""
        scope, self._scope = self._scope, (set() if self.watching else None)
        # The watcher delivers a path once no event came for it for its debounce: that quiet
        # spell is the first of the two looks that must agree before a change is published.
        narrowed = scope is not None
        self.scanner.stable_interval_s = 0.0 if narrowed else self.options.stable_interval_s
        return [""] if scope is None else minimal_roots(scope)

    async def _record_scan(self, scan: ScanResult, *, full: bool) -> None:
        """Write the scan into the index; per-file scan errors are found again by a full one."""
        if full:
            self.store.clear_file_errors("scan")
            self.store.clear_file_errors("read")
        await record_scan(self.index, scan)
        self.store.forget_unpublished_deletions()
        self.store.index_changed()

    # -- pull ------------------------------------------------------------------------------------

    async def pull(self) -> int:
        """Catch up from the cursor; how many envelopes of others were applied."""
        if self._log_quiet():
            return 0
        applied = 0
        while True:
            cursor = self.replica.cursor
            page = self.link.pushed_page(self.share, cursor)
            if page is None:
                page = await self.link.read_log(self.share, cursor)
            self._last_read_ms = self.clock.now_ms()
            self.relay_chain_height = page.chain_height
            if not page.entries:
                return applied
            report = self.replica.apply_page(page.entries, self.clock.now_ms())
            applied += report.applied
            if report.dropped:
                self._after_lost_fork(report.dropped_own)
            if report.applied:
                self.apply_pending = True  # the disk has yet to follow the tree
            for rejected in report.rejected:
                logger.warning(
                    "share %s: envelope %d not applied: %s",
                    self.share,
                    rejected.seq,
                    rejected.reason,
                )
            if report.needs_keys and not await self.keys.adopt(self.replica):
                return applied  # the rest waits for the key of its epoch
            if report.needs_chain:
                height = self.replica.chain.height
                self.replica.update_chain(await self.link.chain(self.share, height + 1))
                if self.replica.chain.height == height:
                    raise ShareError(
                        "the relay serves envelopes naming a membership chain it does not serve",
                        hint="try again later; if it persists, report it to the relay operator",
                    )
                # Before the log goes on: it may hold envelopes at counters of ones held here
                # that the new entries make invalid, which would pass for seen before.
                self.take_back()
                continue
            if not page.more and not report.needs_keys:
                return applied

    def _log_quiet(self) -> bool:
        """Whether the live notification socket says the log and the chain hold nothing this
        device lacks, and the log was read recently: then a read would come back empty.

        Most passes are woken by local changes, and a third of them used to read an empty page.
        Notifications can be late or lost (a socket dropping, the relay's pub/sub missing one
        until its next heartbeat), so a pass still reads at least every ``QUIET_READ_MAX_MS``.
        """
        known = self.link.known_head(self.share)
        if known is None or self._last_read_ms is None:
            return False
        seq, height = known
        if seq > self.replica.cursor or height > self.replica.chain.height:
            return False
        if self.clock.now_ms() - self._last_read_ms >= QUIET_READ_MAX_MS:
            return False
        self.relay_chain_height = height
        return True

    async def refresh_chain(self) -> None:
        self.replica.update_chain(await self.link.chain(self.share, self.replica.chain.height + 1))

    # -- guards ----------------------------------------------------------------------------------

    async def _marker_guard(self) -> bool:
        """A folder without its marker is missing, moved or not mounted, never emptied."""
        try:
            await self.executor.run(self.fs.lstat, MARKER)
            return True
        except FsError:
            pass
        if self.store.has_files() and not self.override_guard:
            self._pause(
                "the folder's .drift marker is gone: the folder is missing, moved or not "
                "mounted; run `drift resume` once it is back (nothing was deleted)"
            )
            return False
        await self._ensure_dir(".drift")
        await self.executor.run(self.fs.write_atomic, MARKER, self.share.encode())
        return True

    def _scan_guard(self, scan: ScanResult) -> bool:
        for error in scan.errors:
            if error.path == "":
                self._pause(f"the folder cannot be read: {error.reason}")
                return False
        files, already_gone = self.store.count_files()
        gone = already_gone + sum(
            1
            for c in scan.changes
            if c.kind is ChangeKind.DELETED
            and c.old is not None
            and c.old.node_id is not None
            and c.old.kind is FileKind.FILE
        )
        if (
            not self.override_guard
            and files >= self.options.mass_delete_min_files
            and gone > self.options.mass_delete_fraction * files
        ):
            self._pause(
                f"{gone} of {files} files disappeared at once; not propagating the "
                "deletions. Run `drift resume --accept-deletes` if this was on purpose"
            )
            return False
        self.override_guard = False
        return True

    def _pause(self, reason: str) -> None:
        if self.reason != reason:
            logger.warning("share %s paused: %s", self.share, reason)
        self.state, self.reason = ShareState.PAUSED, reason

    # -- outbox ----------------------------------------------------------------------------------

    async def _send_to_relay(self) -> None:
        """The outbox (and, with LAN peers, what the relay missed); raises while it is away."""
        if self.relay_down is not None:
            # The LAN part of the pass is done; the daemon retries the relay on its timer.
            raise RelayUnreachable(self.relay_down.message, hint=self.relay_down.hint)
        await self.catch_relay_up()
        await self.send_outbox()

    async def send_outbox(self) -> int:
        """Send sealed envelopes in order; how many the relay acknowledged."""
        outbox = self.store.outbox()
        sent = 0
        for start in range(0, len(outbox), APPEND_BATCH):
            batch = outbox[start : start + APPEND_BATCH]
            try:
                ack = await self.link.append(self.share, [(env, None) for _, env in batch])
            except RelayRefused as exc:
                if exc.code == "fork":
                    self._recover_from_fork()
                    return sent
                if exc.code in ("role", "not_member", "forbidden"):
                    self.state = ShareState.ERROR
                    self.reason = f"the relay refused this device's changes: {exc.message}"
                raise
            self.store.drop_outbox(batch[-1][0])
            self.replica.note_own_appended([env for _, env in batch], ack, self.clock.now_ms())
            self.lan.own_line_settled()
            sent += len(batch)
        return sent

    def _recover_from_fork(self) -> None:
        """Another copy of this device (a restored backup, a cloned disk) wrote at our counters.

        We stop writing, drop what the relay refused, rebuild the tree without it and forget the
        base of every path whose synced state came from it: the next pass pulls the other
        copy's envelopes, continues our counter after them and publishes the disk again —
        where the share now holds something else, ours becomes a conflicted copy. Nothing on
        disk is touched here.
        """
        dropped = self.replica.abandon_unsent()
        # The other copy's envelopes may have come down already, passed over as ours (their
        # counters were ours then): read the log again from the start to apply them now.
        self.store.set("cursor", 0)
        logger.warning(
            "share %s: fork at this device's counter; %d envelope(s) dropped, republishing",
            self.share,
            dropped,
        )
        self.replica = ShareReplica.open(self.store, self.replica.device, self.replica.rng)
        self._forget_lost_bases()
        self.state = ShareState.SYNCING
        self.reason = "recovering from a fork: republishing this device's changes"

    def _after_lost_fork(self, own_dropped: int) -> None:
        """The pull took a fork's losing line back out of the tree (another device's envelopes
        that only came over the LAN, and whatever was sealed on top of them, ours included)."""
        self._forget_lost_bases()
        if own_dropped:
            self.state = ShareState.SYNCING
            self.reason = "recovering from a fork: republishing this device's changes"

    def _forget_lost_bases(self) -> None:
        """Forget the base of every path whose synced state the tree no longer holds: what the
        disk has there is published again (a conflicted copy where the share now holds
        something else) instead of being overwritten as if the share had changed it."""
        versions = self.tree.index.versions
        for b in self.store.files().values():
            lost_version = b.version is not None and b.version not in versions
            if lost_version or b.entry not in self.tree.index.creates:
                self.store.forget_file(b.path)
        self.apply_pending = True

    # -- errors and status -----------------------------------------------------------------------

    def status(self, root: str) -> ShareStatus:
        status = ShareStatus(self.share, root, self.state, self.reason)
        if self.notice:
            status.reason = f"{status.reason}; {self.notice}" if status.reason else self.notice
        base = self.store.files()
        for path, entry in self.tree.walk():
            if entry.is_dir:
                status.dirs += 1
                continue
            status.files += 1
            status.bytes += entry.version.size if entry.version else 0
            if entry.kind is EntryKind.CONFLICTED_COPY or CONFLICT_MARK in entry.name:
                status.conflicts.append(path)
            b = base.get(path)
            if entry.version is not None and (b is None or b.version != entry.version.version_id):
                status.pending_down += 1
                status.not_synced.setdefault(path, "waiting: a newer version is to be downloaded")
        status.pending_up = len(self.store.outbox())
        for device, raw in sorted(self.store.certificates().items()):
            if device != self.replica.device.device_id:
                cert = DeviceCertificate.decode(raw)
                status.peers.append(f"{cert.name} ({short_id(device)})")
        status.last_sync_ms = int(self.store.get("last_sync_ms", 0))
        for error in self.store.file_errors():
            status.not_synced[error.path] = f"{error.op}: {error.reason}"
            status.file_errors += 1
        for path, state in self.store.unsynced().items():
            status.not_synced.setdefault(path, _WHY[state])
        if self.store.outbox():
            status.not_synced.setdefault(
                "(changes)", f"{status.pending_up} change(s) not yet acknowledged by the relay"
            )
        return status


_WHY = {
    SyncState.NEW: "new here: not yet published",
    SyncState.MODIFIED: "changed here: the new version is not yet published",
    SyncState.DELETED: "deleted here: the deletion is not yet published",
    SyncState.CONFLICT: "changed here and in the share: a conflicted copy is due",
    SyncState.ERROR: "the last attempt failed",
    SyncState.IGNORED: "matched by an ignore rule: left alone both ways",
    SyncState.SYNCED: "in sync",
}

