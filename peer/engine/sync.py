"""One share's sync pass: pull from the relay, publish local changes, make the disk match the tree.

A pass is a reconciliation, so it is right after any crash or restart: ``files`` in the share's
state records what was last synced at each path (the *base*). A disk entry that differs from its
base is a local change; a tree entry that differs from its base is a remote change; where both
changed, the local file is never overwritten — it becomes a conflicted copy. Order per pass:

1. pull: catch up from the cursor, verify and apply envelopes to the folder tree;
2. guards: the folder's marker must be there (a missing or unmounted folder pauses the share) and
   a mass deletion pauses it instead of propagating;
3. local → tree: new, changed, moved, deleted entries become tree operations, each sealed into an
   envelope after its blocks are at the relay;
4. tree → disk: moves as moves, deletions to the local trash, new versions downloaded, verified
   and written atomically (guarded against a concurrent local change);
5. the outbox is sent (resent after a crash: the relay answers an identical resend with its
   original sequence).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from crdt.errors import CrdtError
from crdt.names import conflicted_copy_name
from crdt.tree import FileContent, FolderTree, LocalUpdate
from crdt.view import Entry, EntryKind
from peer.device.store import FileError, ShareStore, SyncedFile
from peer.engine.content import RelayBlocks, content_hash_of
from peer.engine.replica import ShareReplica
from peer.engine.scan import ScanResult, scan_folder
from peer.engine.state import ShareState, ShareStatus
from peer.engine.transfer import Uploaded, download_file, upload_file
from peer.errors import DriftError, IntegrityError, RelayRefused, ShareError
from peer.fs import (
    MISSING,
    AlreadyExistsError,
    FileInfo,
    FileKind,
    FileSystem,
    FsError,
    same_version,
)
from peer.local.ignore import IgnoreRules
from peer.local.names import NameRules, encode_name
from peer.remote.link import RelayLink
from protocol.chain import WRITERS
from protocol.ids import short_id
from protocol.keys import DeviceCertificate
from seams import Clock, Executor
from storage.errors import StorageError

logger = logging.getLogger("peer.engine")

MARKER = ".drift/share"
CONFLICT_MARK = " (conflicted copy "  # in names made by crdt.names.conflicted_copy_name
APPEND_BATCH = 100
SMALL_FILE_BYTES = 1 << 20
FILES_IN_FLIGHT = 8
IMPORT_BATCH = 200


@dataclass(frozen=True, slots=True)
class SyncOptions:
    mass_delete_fraction: float = 0.5
    mass_delete_min_files: int = 10
    racy_window_ns: int = 2_000_000_000
    retry_after_ms: int = 10_000


@dataclass
class PassReport:
    published: int = 0
    downloaded: int = 0
    moved: int = 0
    trashed: int = 0
    conflicts: int = 0
    errors: int = 0
    changing: list[str] = field(default_factory=list)  # files still being written: retry soon


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _name(path: str) -> str:
    return path.rpartition("/")[2]


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _depth(path: str) -> int:
    return path.count("/")


class ShareSync:
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
        self.blocks = RelayBlocks(link, self.share)
        self.state = ShareState.IDLE
        self.reason = ""
        self.override_guard = False
        self.notice = ""  # a lasting condition that does not stop syncing (no file watches)
        self._report = PassReport()
        self._recorded: set[str] = set()
        # Called with (phase, bytes done, bytes in the phase) as files finish: progress bars.
        self.on_progress: Callable[[str, int, int], None] | None = None

    @property
    def tree(self) -> FolderTree:
        return self.replica.tree

    # -- the pass --------------------------------------------------------------------------------

    async def run_pass(self) -> PassReport:
        report = PassReport()
        await self.pull()
        scan = await self.executor.run(self._scan)
        if not await self._guard(scan):
            await self.send_outbox()
            return report
        with self.store.batch():
            await self.publish_local(scan, report)
        with self.store.batch():
            await self.apply_remote(report)
        await self.send_outbox()
        self.store.set("last_sync_ms", self.clock.now_ms())
        self.state, self.reason = ShareState.IDLE, ""  # past the guards: whatever paused is over
        return report

    def _scan(self) -> ScanResult:
        return scan_folder(self.fs, IgnoreRules.load(self.fs))

    # -- pull ------------------------------------------------------------------------------------

    async def pull(self) -> int:
        """Catch up from the cursor; how many envelopes of others were applied."""
        applied = 0
        while True:
            page = await self.link.read_log(self.share, self.replica.cursor)
            if not page.entries:
                return applied
            report = self.replica.apply_page(page.entries, self.clock.now_ms())
            applied += report.applied
            for rejected in report.rejected:
                logger.warning(
                    "share %s: envelope %d not applied: %s",
                    self.share,
                    rejected.seq,
                    rejected.reason,
                )
            if report.needs_chain:
                height = self.replica.chain.height
                self.replica.update_chain(await self.link.chain(self.share, height + 1))
                if self.replica.chain.height == height:
                    raise ShareError(
                        "the relay serves envelopes naming a membership chain it does not serve",
                        hint="try again later; if it persists, report it to the relay operator",
                    )
                continue
            if not page.more:
                return applied

    async def refresh_chain(self) -> None:
        self.replica.update_chain(await self.link.chain(self.share, self.replica.chain.height + 1))

    # -- guards ----------------------------------------------------------------------------------

    async def _guard(self, scan: ScanResult) -> bool:
        base = self.store.files()
        if "." in scan.unreadable:
            self._pause(f"the folder cannot be read: {scan.unreadable['.']}")
            return False
        has_marker = True
        try:
            await self.executor.run(self.fs.lstat, MARKER)
        except FsError:
            has_marker = False
        if not has_marker:
            if base and not self.override_guard:
                self._pause(
                    "the folder's .drift marker is gone: the folder is missing, moved or not "
                    "mounted; run `drift resume` once it is back (nothing was deleted)"
                )
                return False
            await self._ensure_dir(".drift")
            await self.executor.run(self.fs.write_atomic, MARKER, self.share.encode())
        files = [b for b in base.values() if b.kind == "file"]
        gone = [b for b in files if b.disk_path not in scan.entries]
        if (
            not self.override_guard
            and len(files) >= self.options.mass_delete_min_files
            and len(gone) > self.options.mass_delete_fraction * len(files)
        ):
            self._pause(
                f"{len(gone)} of {len(files)} files disappeared at once; not propagating the "
                "deletions. Run `drift resume --accept-deletes` if this was on purpose"
            )
            return False
        self.override_guard = False
        return True

    def _pause(self, reason: str) -> None:
        if self.reason != reason:
            logger.warning("share %s paused: %s", self.share, reason)
        self.state, self.reason = ShareState.PAUSED, reason

    # -- local → tree ----------------------------------------------------------------------------

    def _writable(self) -> bool:
        return self.replica.role in WRITERS

    async def publish_local(self, scan: ScanResult, report: PassReport) -> None:
        for path in scan.leftovers:
            # A write killed half-way (ours never overlap a scan: one pass at a time per share).
            with contextlib.suppress(FsError):
                await self.executor.run(self.fs.remove_file, path)
        for path, why in scan.skipped.items():
            self._file_error(path, "skip", why)
        for path, why in scan.unreadable.items():
            self._file_error(path, "scan", why)
        base = self.store.files()
        by_disk = {b.disk_path: b for b in base.values()}
        entries = scan.entries
        new = {d: i for d, i in entries.items() if d not in by_disk}
        gone = {d: b for d, b in by_disk.items() if d not in entries}
        changed: dict[str, tuple[SyncedFile, FileInfo]] = {}
        now_ns = self.clock.now_ms() * 1_000_000
        for d, b in by_disk.items():
            info = entries.get(d)
            if info is None:
                continue
            kind = "dir" if info.kind is FileKind.DIR else "file"
            if kind != b.kind:
                gone[d] = b
                new[d] = info
            elif kind == "file" and (
                (info.size, info.mtime_ns, info.inode) != (b.size, b.mtime_ns, b.inode)
                or now_ns - info.mtime_ns < self.options.racy_window_ns
            ):
                changed[d] = (b, info)
        if not (new or gone or changed):
            return
        if not self._writable():
            for d in sorted(new) + sorted(changed):
                self._file_error(d, "publish", "you are a viewer of this share: not published")
            return
        self._report = report
        self._recorded: set[str] = set()
        self._moves(new, gone, report)
        # Phase 1: every new or changed file's blocks reach the relay. A failure here (offline)
        # leaves the tree untouched; the next pass starts again and sends only what is missing.
        new_files = sorted(d for d, i in new.items() if i.kind is not FileKind.DIR)
        uploads: dict[str, tuple[Uploaded, FileInfo]] = {}

        async def upload(d: str) -> None:
            info = new[d] if d in new else changed[d][1]
            uploaded, after = await self._upload(d, info, report)
            if uploaded is not None and after is not None:
                uploads[d] = (uploaded, after)

        await self._bounded(
            [*new_files, *sorted(changed)],
            upload,
            lambda d: (new[d] if d in new else changed[d][1]).size,
            "upload",
        )
        await self.blocks.flush()
        # Phase 2: tree operations, each sealed into an envelope (and committed) at once.
        for d in sorted((d for d, i in new.items() if i.kind is FileKind.DIR), key=_depth):
            self._local_dir(d, new[d])
        fresh = [d for d in new_files if d in uploads and self.tree.lookup(d) is None]
        for start in range(0, len(fresh), IMPORT_BATCH):
            self._import(fresh[start : start + IMPORT_BATCH], uploads)
        for d in new_files:
            if d in uploads and self._unrecorded(d):
                await self._local_new_file(d, *uploads[d], report)
        for d in sorted(changed):
            if d in uploads:
                await self._local_changed_file(d, changed[d][0], *uploads[d], report)
        for d in sorted(gone, key=lambda p: -_depth(p)):
            self._local_gone(gone[d])

    def _unrecorded(self, d: str) -> bool:
        return d not in self._recorded

    def _import(self, paths: list[str], uploads: dict[str, tuple[Uploaded, FileInfo]]) -> None:
        """Many new files in one update (one envelope): the common case of a first scan."""
        items = [
            (d, FileContent(u.content, u.size, after.mtime_ns // 1_000_000))
            for d in paths
            for u, after in (uploads[d],)
        ]
        try:
            update = self.tree.import_tree(items, now_ms=self.clock.now_ms())
        except CrdtError:
            return  # a name is taken after all: these go one by one
        self._emit(update, tuple(dict.fromkeys(b for d in paths for b in uploads[d][0].blocks)))
        for d in paths:
            uploaded, after = uploads[d]
            self._record(d, d, after, uploaded.content)
            self._recorded.add(d)

    def _emit(self, update: LocalUpdate, blocks: tuple[bytes, ...] = ()) -> None:
        self.replica.seal(update, blocks, self.clock.now_ms())
        self._report.published += 1

    def _record(self, path: str, disk: str, info: FileInfo, content: bytes | None = None) -> None:
        entry = self.tree.lookup(path)
        if entry is None:
            return
        version = entry.version.version_id if entry.version is not None else None
        if content is None and entry.version is not None:
            content = entry.version.manifest
        self.store.put_file(
            SyncedFile(
                path,
                disk,
                entry.id,
                "dir" if entry.is_dir else "file",
                info.size,
                info.mtime_ns,
                info.inode,
                info.executable,
                content,
                version,
            )
        )
        self.store.clear_file_error(path)
        self.store.tick()

    def _ensure_parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folder = "/".join(parts[:i])
            entry = self.tree.lookup(folder)
            if entry is None:
                self._emit(self.tree.mkdir(folder, now_ms=self.clock.now_ms()))
            elif not entry.is_dir:
                raise CrdtError(f"{folder!r} is a file in the share, not a folder")

    def _moves(
        self,
        new: dict[str, FileInfo],
        gone: dict[str, SyncedFile],
        report: PassReport,
    ) -> None:
        """A vanished path and a new one with the same inode (and kind) is a move or rename."""
        by_inode = {(i.inode, i.kind is FileKind.DIR): d for d, i in new.items() if i.inode}
        for old_disk in sorted(gone, key=_depth):
            b = gone.get(old_disk)
            if b is None:
                continue
            new_disk = by_inode.get((b.inode, b.kind == "dir"))
            if new_disk is None or new_disk not in new:
                continue
            info = new[new_disk]
            if b.kind == "file" and (info.size, info.mtime_ns) != (b.size, b.mtime_ns):
                continue  # moved and edited: an edit at the new place, a delete at the old
            entry = self.tree.lookup(b.path)
            target = new_disk
            try:
                if entry is not None and entry.id == b.entry:
                    self._ensure_parents(target)
                    if self.tree.lookup(target) is None or _name(target) != _name(b.path):
                        self._emit(
                            self.tree.move(
                                b.path,
                                _parent(target),
                                new_name=_name(target),
                                now_ms=self.clock.now_ms(),
                            )
                        )
                    elif self.tree.lookup(target) is not None:
                        continue
                else:
                    continue
            except CrdtError as exc:
                self._file_error(target, "move", str(exc))
                continue
            report.moved += 1
            # Re-key the base of the moved entry and, for a folder, of everything under it.
            prefix = b.path + "/"
            for row in list(self.store.files().values()):
                if row.path == b.path or row.path.startswith(prefix):
                    self.store.forget_file(row.path)
                    tail = row.path[len(b.path) :]
                    new_path = target + tail
                    new_disk_path = target + row.disk_path[len(b.disk_path) :]
                    self.store.put_file(
                        SyncedFile(
                            new_path,
                            new_disk_path,
                            row.entry,
                            row.kind,
                            row.size,
                            row.mtime_ns,
                            row.inode,
                            row.executable,
                            row.content,
                            row.version,
                        )
                    )
                    gone.pop(row.disk_path, None)
                    new.pop(new_disk_path, None)

    def _local_dir(self, d: str, info: FileInfo) -> None:
        try:
            entry = self.tree.lookup(d)
            if entry is None:
                self._ensure_parents(d)
                self._emit(self.tree.mkdir(d, now_ms=self.clock.now_ms()))
            elif not entry.is_dir:
                self._file_error(d, "publish", "a file of the same name exists in the share")
                return
            self._record(d, d, info)
        except CrdtError as exc:
            self._file_error(d, "publish", str(exc))

    async def _upload(
        self, d: str, info: FileInfo, report: PassReport
    ) -> tuple[Uploaded, FileInfo] | tuple[None, None]:
        try:
            uploaded = await upload_file(
                self.fs,
                d,
                self.blocks,
                self.replica.crypto,
                self.replica.chain.current_epoch,
                self.executor,
            )
            after = await self.executor.run(self.fs.lstat, d)
        except (FsError, StorageError) as exc:
            self._file_error(d, "upload", str(exc))
            report.errors += 1
            return None, None
        if not same_version(info, after):
            report.changing.append(d)  # still being written: not published half-way
            return None, None
        return uploaded, after

    async def _local_new_file(
        self, d: str, uploaded: Uploaded, after: FileInfo, report: PassReport
    ) -> None:
        content = FileContent(uploaded.content, uploaded.size, after.mtime_ns // 1_000_000)
        try:
            entry = self.tree.lookup(d)
            if (
                entry is not None
                and not entry.is_dir
                and entry.version is not None
                and (content_hash_of(entry.version.manifest) == content_hash_of(uploaded.content))
            ):
                self._record(d, d, after)  # the same file is already in the share
                return
            if entry is not None:
                # The share has something else here (a first merge, or a race): keep ours as a
                # conflicted copy beside it; the share's version is written to this path.
                d = await self._set_aside(d)
                report.conflicts += 1
                after = await self.executor.run(self.fs.lstat, d)
            self._ensure_parents(d)
            self._emit(
                self.tree.create_file(d, content, now_ms=self.clock.now_ms()), uploaded.blocks
            )
            self._record(d, d, after, uploaded.content)
        except CrdtError as exc:
            self._file_error(d, "publish", str(exc))
            report.errors += 1

    async def _set_aside(self, d: str) -> str:
        name = conflicted_copy_name(
            _name(d), self.replica.identity.replica, self.clock.now_ms() % 1_000_000
        )
        target = _join(_parent(d), name)
        await self.executor.run(self.fs.rename, d, target)
        return target

    async def _local_changed_file(
        self, d: str, b: SyncedFile, uploaded: Uploaded, after: FileInfo, report: PassReport
    ) -> None:
        if b.content is not None and content_hash_of(b.content) == content_hash_of(
            uploaded.content
        ):
            self.store.put_file(  # touched, not changed
                SyncedFile(
                    b.path,
                    b.disk_path,
                    b.entry,
                    b.kind,
                    after.size,
                    after.mtime_ns,
                    after.inode,
                    after.executable,
                    b.content,
                    b.version,
                )
            )
            return
        content = FileContent(uploaded.content, uploaded.size, after.mtime_ns // 1_000_000)
        try:
            entry = self.tree.lookup(b.path)
            if entry is None or entry.id != b.entry:
                # Deleted or replaced remotely meanwhile: an edit beats a delete; it comes back.
                if entry is not None:
                    d = await self._set_aside(d)
                    after = await self.executor.run(self.fs.lstat, d)
                    report.conflicts += 1
                self.store.forget_file(b.path)
                self._ensure_parents(d)
                self._emit(
                    self.tree.create_file(d, content, now_ms=self.clock.now_ms()), uploaded.blocks
                )
                self._record(d, d, after, uploaded.content)
            elif entry.version is not None and entry.version.version_id == b.version:
                self._emit(
                    self.tree.edit(b.path, content, now_ms=self.clock.now_ms()), uploaded.blocks
                )
                self._record(b.path, d, after, uploaded.content)
            else:
                # Both sides changed it: ours becomes a conflicted copy, theirs takes the path.
                self.store.forget_file(b.path)
                aside = await self._set_aside(d)
                after = await self.executor.run(self.fs.lstat, aside)
                self._ensure_parents(aside)
                self._emit(
                    self.tree.create_file(aside, content, now_ms=self.clock.now_ms()),
                    uploaded.blocks,
                )
                self._record(aside, aside, after, uploaded.content)
                report.conflicts += 1
        except CrdtError as exc:
            self._file_error(d, "publish", str(exc))
            report.errors += 1

    def _local_gone(self, b: SyncedFile) -> None:
        entry = self.tree.lookup(b.path)
        self.store.forget_file(b.path)
        self.store.clear_file_error(b.path)
        if entry is None or entry.id != b.entry:
            return
        try:
            if entry.is_dir:
                if self.tree.children(b.path):
                    return  # something new arrived in it: the folder stays
            elif entry.version is None or entry.version.version_id != b.version:
                return  # edited elsewhere meanwhile: the edit wins, the file comes back
            self._emit(self.tree.delete(b.path, now_ms=self.clock.now_ms()))
        except CrdtError as exc:
            self._file_error(b.path, "delete", str(exc))

    # -- tree → disk -----------------------------------------------------------------------------

    def disk_path(self, tree_path: str) -> str:
        return "/".join(encode_name(p, self.rules) for p in tree_path.split("/"))

    async def apply_remote(self, report: PassReport) -> None:
        listing: dict[str, Entry] = dict(self.tree.walk())
        by_id = {e.id: p for p, e in listing.items()}
        base = self.store.files()
        # 1. Entries no longer at their base path: moved (move on disk) or gone (to the trash).
        displaced = [p for p, b in base.items() if (e := listing.get(p)) is None or e.id != b.entry]
        for path in sorted(displaced, key=_depth):
            b = base.get(path)  # re-read after each move: a folder's move re-keys its contents
            if b is None:
                continue
            entry = listing.get(path)
            if entry is not None and entry.id == b.entry:
                continue
            new_path = by_id.get(b.entry)
            if new_path is not None and new_path not in base:
                await self._remote_move(b, new_path, report)
                base = self.store.files()
        if displaced:
            base = self.store.files()
        for path in sorted(base, key=lambda p: -_depth(p)):
            b = base[path]
            entry = listing.get(path)
            if entry is not None and entry.id == b.entry:
                continue
            if by_id.get(b.entry) is not None:
                continue
            await self._remote_gone(b, report)
        # 2. Entries the disk lacks, or holds in another version.
        base = self.store.files()
        missing_blocks = [
            e.version.manifest[:32]
            for p, e in listing.items()
            if not e.is_dir
            and e.version is not None
            and len(e.version.manifest) == 64
            and e.version.size <= 256 * 1024
            and (p not in base or base[p].version != e.version.version_id)
        ]
        for start in range(0, len(missing_blocks), 256):
            try:
                await self.blocks.prefetch(missing_blocks[start : start + 256])
            except DriftError:
                break  # fetched one by one below, with per-file errors
        for path, entry in listing.items():
            if entry.is_dir and path not in base:
                await self._remote_dir(path, report)
        wanted: list[str] = []
        for path, entry in listing.items():
            b = base.get(path)
            if entry.is_dir or entry.version is None:
                continue
            if b is not None and b.version == entry.version.version_id:
                continue
            if b is not None and b.content == entry.version.manifest:
                self.store.put_file(
                    SyncedFile(
                        b.path,
                        b.disk_path,
                        entry.id,
                        b.kind,
                        b.size,
                        b.mtime_ns,
                        b.inode,
                        b.executable,
                        b.content,
                        entry.version.version_id,
                    )
                )
                continue
            wanted.append(path)

        async def fetch(path: str) -> None:
            await self._remote_file(path, listing[path], base.get(path), report)

        await self._bounded(
            wanted,
            fetch,
            lambda p: listing[p].version.size,  # type: ignore[union-attr]
            "download",
        )

    async def _bounded(
        self,
        items: list[str],
        job: Callable[[str], Awaitable[None]],
        size: Callable[[str], int],
        phase: str = "",
    ) -> None:
        """Small files several at a time (their fsyncs and round trips overlap), large ones
        alone (each already streams with several blocks in flight, in bounded memory)."""
        small = [i for i in items if size(i) <= SMALL_FILE_BYTES]
        gate = asyncio.Semaphore(FILES_IN_FLIGHT)
        total_bytes = sum(size(i) for i in items)
        done = [0]

        async def tracked(item: str) -> None:
            await job(item)
            done[0] += size(item)
            if self.on_progress is not None and phase:
                self.on_progress(phase, done[0], total_bytes)

        async def gated(item: str) -> None:
            async with gate:
                await tracked(item)

        tasks = [asyncio.ensure_future(gated(i)) for i in small]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for item in items:
            if size(item) > SMALL_FILE_BYTES:
                await tracked(item)

    async def _disk_matches(self, b: SyncedFile) -> FileInfo | None:
        try:
            info = await self.executor.run(self.fs.lstat, b.disk_path)
        except FsError:
            return None
        if b.kind == "dir":
            return info if info.kind is FileKind.DIR else None
        same = (info.size, info.mtime_ns, info.inode) == (b.size, b.mtime_ns, b.inode)
        return info if same else None

    async def _remote_move(self, b: SyncedFile, new_path: str, report: PassReport) -> None:
        info = await self._disk_matches(b)
        if info is None:
            return  # changed locally: the next pass publishes it
        target = self.disk_path(new_path)
        try:
            await self._ensure_dir(_parent(target))
            await self.executor.run(self.fs.rename, b.disk_path, target)
        except FsError as exc:
            self._file_error(new_path, "move", str(exc))
            report.errors += 1
            return
        report.moved += 1
        prefix = b.path + "/"
        for row in list(self.store.files().values()):
            if row.path == b.path or row.path.startswith(prefix):
                self.store.forget_file(row.path)
                new_row_path = new_path + row.path[len(b.path) :]
                self.store.put_file(
                    SyncedFile(
                        new_row_path,
                        target + row.disk_path[len(b.disk_path) :],
                        row.entry,
                        row.kind,
                        row.size,
                        row.mtime_ns,
                        row.inode,
                        row.executable,
                        row.content,
                        row.version,
                    )
                )

    async def _remote_gone(self, b: SyncedFile, report: PassReport) -> None:
        info = await self._disk_matches(b)
        if info is None:
            try:
                await self.executor.run(self.fs.lstat, b.disk_path)
            except FsError:
                self.store.forget_file(b.path)  # gone on both sides
            else:
                self.store.forget_file(b.path)  # changed here: published again as new
            return
        try:
            if b.kind == "dir":
                if await self.executor.run(self.fs.list_dir, b.disk_path):
                    self.store.forget_file(b.path)  # holds local files: it stays, republished
                    return
                await self.executor.run(self.fs.rmdir, b.disk_path)
            else:
                await self.executor.run(self.fs.trash, b.disk_path, tag=str(self.clock.now_ms()))
                report.trashed += 1
        except FsError as exc:
            self._file_error(b.path, "delete", str(exc))
            return
        self.store.forget_file(b.path)

    async def _ensure_dir(self, disk: str) -> None:
        """The folder exists afterwards (an existing folder is fine, a file there is not)."""
        if not disk:
            return
        try:
            await self.executor.run(self.fs.mkdir, disk, parents=True)
        except AlreadyExistsError:
            info = await self.executor.run(self.fs.lstat, disk)
            if info.kind is not FileKind.DIR:
                raise

    async def _remote_dir(self, path: str, report: PassReport) -> None:
        disk = self.disk_path(path)
        try:
            await self._ensure_dir(disk)
            info = await self.executor.run(self.fs.lstat, disk)
        except FsError as exc:
            self._file_error(path, "mkdir", str(exc))
            report.errors += 1
            return
        self._record(path, disk, info)

    async def _remote_file(
        self, path: str, entry: Entry, b: SyncedFile | None, report: PassReport
    ) -> None:
        assert entry.version is not None
        disk = self.disk_path(path)
        if b is None:
            expect: FileInfo | object = MISSING
        else:
            current = await self._disk_matches(b)
            if current is None:
                return  # changed locally since: the next pass makes it a conflicted copy
            expect = current
        try:
            await self._ensure_dir(_parent(disk))
            info = await download_file(
                self.fs,
                disk,
                entry.version.manifest,
                entry.version.size,
                entry.version.mtime_ms,
                self.blocks,
                self.replica.crypto,
                self.executor,
                expect,  # type: ignore[arg-type]
            )
        except FsError as exc:
            # Most often: a local file appeared or changed at this path meanwhile. It is never
            # replaced; the next pass publishes it (as a conflicted copy if need be).
            self._file_error(path, "download", str(exc))
            report.errors += 1
            return
        except (IntegrityError, StorageError, RelayRefused) as exc:
            self._file_error(path, "download", f"the version could not be verified: {exc}")
            report.errors += 1
            return
        self._record(path, disk, info, entry.version.manifest)
        report.downloaded += 1
        if entry.kind is EntryKind.CONFLICTED_COPY:
            report.conflicts += 1

    # -- outbox ----------------------------------------------------------------------------------

    async def send_outbox(self) -> int:
        """Send sealed envelopes in order; how many the relay acknowledged."""
        outbox = self.store.outbox()
        sent = 0
        for start in range(0, len(outbox), APPEND_BATCH):
            batch = outbox[start : start + APPEND_BATCH]
            try:
                await self.link.append(self.share, [(env, None) for _, env in batch])
            except RelayRefused as exc:
                if exc.code == "fork":
                    self._recover_from_fork()
                    return sent
                if exc.code in ("role", "not_member", "forbidden"):
                    self.state = ShareState.ERROR
                    self.reason = f"the relay refused this device's changes: {exc.message}"
                raise
            self.store.drop_outbox(batch[-1][0])
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
        logger.warning(
            "share %s: fork at this device's counter; %d envelope(s) dropped, republishing",
            self.share,
            dropped,
        )
        self.replica = ShareReplica.open(self.store, self.replica.device, self.replica.rng)
        versions = self.tree.index.versions
        for b in self.store.files().values():
            lost_version = b.version is not None and b.version not in versions
            if lost_version or b.entry not in self.tree.index.creates:
                self.store.forget_file(b.path)
        self.state = ShareState.SYNCING
        self.reason = "recovering from a fork: republishing this device's changes"

    # -- errors and status -----------------------------------------------------------------------

    def _file_error(self, path: str, op: str, reason: str) -> None:
        now = self.clock.now_ms()
        self.store.set_file_error(
            FileError(path, op, reason, now, now + self.options.retry_after_ms)
        )

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
        if self.store.outbox():
            status.not_synced.setdefault(
                "(changes)", f"{status.pending_up} change(s) not yet acknowledged by the relay"
            )
        return status
