"""Local → tree: new, changed, moved and deleted entries on disk become tree operations.

What changed comes from the local index, where the scanner recorded it (``peer.local``): the
engine publishes every path the index does not hold as synced, and marks it synced when done.

Every new or changed file's blocks reach the relay first (phase 1); only then do the tree
operations happen, each sealed into an envelope at once (phase 2), so an offline or failed upload
leaves the tree untouched and the next pass starts over, sending only what the relay lacks.
Where the share changed a file too, ours becomes a conflicted copy; nothing is overwritten.
"""

from __future__ import annotations

import contextlib
import dataclasses

from crdt.errors import CrdtError
from crdt.names import conflicted_copy_name
from crdt.tree import FileContent, LocalUpdate
from peer.device.store import SyncedFile
from peer.engine.content import content_hash_of
from peer.engine.parts import (
    IMPORT_BATCH,
    PassReport,
    SyncParts,
    depth_of,
    join_path,
    name_of,
    parent_of,
)
from peer.engine.transfer import Uploaded, upload_file
from peer.fs import (
    FileInfo,
    FileKind,
    FsError,
    same_version,
)
from peer.local.index import SyncState
from peer.local.scan import ScanResult
from protocol.chain import WRITERS
from storage.errors import StorageError


class Publisher(SyncParts):
    # -- local → tree ----------------------------------------------------------------------------

    def _writable(self) -> bool:
        return self.replica.role in WRITERS

    async def publish_local(self, scan: ScanResult, report: PassReport) -> None:
        """Turn what the local index holds as not yet published into tree operations.

        The scan has been recorded in the index: each path is ``synced`` or says what changed
        (``new``, ``modified``, ``deleted``; a local move shows as a synced entry found at
        another local path). Publishing what the index says, not what this scan saw, means a
        change whose publishing failed (offline, a viewer) is still there on the next pass.
        """
        for path in scan.temp_files:
            # A write killed half-way (ours never overlap a scan: one pass at a time per share).
            with contextlib.suppress(FsError):
                await self.executor.run(self.fs.remove_file, path)
        report.changing.extend(scan.unstable)
        if not self.store.pending_local():
            return
        base = self.store.files()
        new: dict[str, FileInfo] = {}
        for path, row in self.store.index.entries_blocking().items():
            if row.node_id is not None or row.state not in (SyncState.NEW, SyncState.MODIFIED):
                continue
            if row.kind is FileKind.SYMLINK:
                self._file_error(path, "skip", "symbolic links are not synced")
                self.store.set_state(path, SyncState.ERROR)  # until it changes again
                continue
            new[path] = _info(row.path, row.kind, row.size, row.mtime_ns, row.inode, row.executable)
        gone: dict[str, SyncedFile] = {}
        changed: dict[str, tuple[SyncedFile, FileInfo]] = {}
        moved: list[SyncedFile] = []
        for b in base.values():
            if b.state is SyncState.DELETED:
                gone[b.disk_path] = b
                continue
            if b.state not in (SyncState.NEW, SyncState.MODIFIED):
                continue
            info = _info(b.disk_path, FileKind(b.kind), b.size, b.mtime_ns, b.inode, b.executable)
            entry = self.tree.lookup(b.path)
            if entry is not None and entry.id == b.entry and entry.is_dir != (b.kind == "dir"):
                # A file became a folder or the other way round: a deletion and a new entry.
                gone[b.disk_path] = b
                new[b.disk_path] = info
            elif b.disk_path != self.disk_path(b.path):
                moved.append(b)
            elif b.kind == "file":
                changed[b.disk_path] = (b, info)
            elif entry is None:
                # A folder moved away here and back (unpublished) while the share moved or
                # deleted its entry: nothing at its tree path now. A new folder, else it waits
                # for good. (A folder made again where its entry went is new from the scanner.)
                new[b.disk_path] = info
            else:
                self._record(b.path, b.disk_path, info)  # a folder's own change: nothing to say
        if not (new or gone or changed or moved):
            return
        if not self._writable():
            for d in sorted(new) + sorted(changed) + sorted(b.disk_path for b in moved):
                self._file_error(d, "publish", "you are a viewer of this share: not published")
            return
        self._report = report
        self._recorded: set[str] = set()
        for b in self._moves(moved, base, new, gone, report):
            if b.kind == "file":
                info = _info(b.disk_path, FileKind.FILE, b.size, b.mtime_ns, b.inode, b.executable)
                changed[b.disk_path] = (b, info)
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
        for d in sorted(gone, key=lambda p: -depth_of(p)):
            if d in new:
                # Replaced (a type change, a move the share cannot follow): the old goes first.
                self._local_gone(gone.pop(d))
        for d in sorted((d for d, i in new.items() if i.kind is FileKind.DIR), key=depth_of):
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
        for d in sorted(gone, key=lambda p: -depth_of(p)):
            self._local_gone(gone[d])

    def _unrecorded(self, d: str) -> bool:
        return d not in self._recorded

    def _import(self, paths: list[str], uploads: dict[str, tuple[Uploaded, FileInfo]]) -> None:
        """Many new files in one update (one envelope): the common case of a first scan."""
        items = [
            (d, FileContent(u.content, u.size, after.mtime_ns // 1_000_000, after.executable))
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
        moved: list[SyncedFile],
        base: dict[str, SyncedFile],
        new: dict[str, FileInfo],
        gone: dict[str, SyncedFile],
        report: PassReport,
    ) -> list[SyncedFile]:
        """Publish local moves: a synced entry the scanner found at another local path.

        Shallowest target first; a folder's move carries what lies below it, whose rows then
        name their new tree paths. Returns the moved files whose content changed too (or may
        have: a scan pairs a moved file by its bytes, so most are only moved).
        """
        retargeted: list[tuple[str, str]] = []
        replaced: list[str] = []  # local folders published as new: what they hold is too
        follow: list[SyncedFile] = []

        def as_new(b: SyncedFile, target: str) -> None:
            # What is here is new (beside what the share has there, if that differs); what
            # was synced is gone — the share keeps it if it changed there meanwhile.
            below = [r for r in base.values() if r.disk_path.startswith(f"{target}/")]
            for r in [b, *below]:
                r = dataclasses.replace(r, path=_after(r.path, retargeted))
                gone[r.disk_path] = r
                if r.state is SyncState.DELETED:
                    # Deleted here after the move (a row the scanner carried along with the
                    # folder): nothing is on disk to publish. Made new from its stale row, it
                    # would be an entry in the tree, synced in the index, missing on disk.
                    continue
                new[r.disk_path] = _info(
                    r.disk_path, FileKind(r.kind), r.size, r.mtime_ns, r.inode, r.executable
                )
            if b.kind == "dir":
                replaced.append(target)

        pending = sorted(moved, key=lambda r: (depth_of(r.disk_path), r.disk_path))

        def leaving(c: SyncedFile) -> str | None:
            # The tree path a pending folder move takes away (None: it stays where it is).
            source = _after(c.path, retargeted)
            return source if c.kind == "dir" and source != c.disk_path else None

        def next_move() -> SyncedFile:
            # A move into a folder that itself moves away in this pass waits for that move:
            # done first, it would carry the entry along to the folder's new place.
            for b in pending:
                if not any(
                    c is not b and (s := leaving(c)) is not None and b.disk_path.startswith(f"{s}/")
                    for c in pending
                ):
                    return b
            return pending[0]  # moves that wait on each other: in order, as before

        while pending:
            b = next_move()
            pending = [c for c in pending if c is not b]
            if any(b.disk_path.startswith(f"{r}/") for r in replaced):
                continue
            source = _after(b.path, retargeted)
            target = b.disk_path
            b = dataclasses.replace(b, path=source)
            entry = self.tree.lookup(source)
            taken = self.tree.lookup(target)
            if entry is None or entry.id != b.entry or (taken is not None and taken.id != b.entry):
                as_new(b, target)  # moved or deleted in the share meanwhile, or its place taken
                continue
            if source != target:
                try:
                    self._ensure_parents(target)
                    self._emit(
                        self.tree.move(
                            source,
                            parent_of(target),
                            new_name=name_of(target),
                            now_ms=self.clock.now_ms(),
                        )
                    )
                except CrdtError:
                    as_new(b, target)  # a move the tree refuses (a conflicted copy's own)
                    continue
                report.moved += 1
                self.store.retarget(source, target)
                retargeted.append((source, target))
                # A row deleted below the folder names its old tree path: its deletion (and the
                # forgetting of its row) must look where the entry is now. Rows ``as_new`` adds
                # later are mapped through every move when added.
                for d, g in list(gone.items()):
                    if (after := _after(g.path, [(source, target)])) != g.path:
                        gone[d] = dataclasses.replace(g, path=after)
            moved_b = dataclasses.replace(b, path=target)
            if b.kind == "dir":
                self._record(target, target, _info(target, FileKind.DIR, 0, b.mtime_ns, b.inode))
            else:
                follow.append(moved_b)
        return follow

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
                size_hint=info.size,
                lan=self.lan,
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
        content = FileContent(
            uploaded.content, uploaded.size, after.mtime_ns // 1_000_000, after.executable
        )
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
                if not await self._still_uploaded(d, after, report):
                    return
                d = await self._set_aside(d)
                report.conflicts += 1
            self._ensure_parents(d)
            self._emit(
                self.tree.create_file(d, content, now_ms=self.clock.now_ms()), uploaded.blocks
            )
            self._record(d, d, after, uploaded.content)
        except CrdtError as exc:
            self._file_error(d, "publish", str(exc))
            report.errors += 1

    async def _still_uploaded(self, d: str, after: FileInfo, report: PassReport) -> bool:
        """Whether the file at ``d`` is still the version this pass uploaded.

        Set aside, it becomes a conflicted copy of the uploaded content. A write since (the
        user saving again while the blocks were flushed, which may take long while the relay is
        away) must not be renamed in its stead and recorded as synced: it would never be
        published and the disk would not match the tree. It waits for the next pass.
        """
        try:
            now = await self.executor.run(self.fs.lstat, d)
        except FsError:
            now = None
        if now is not None and same_version(after, now):
            return True
        report.changing.append(d)
        return False

    async def _set_aside(self, d: str) -> str:
        name = conflicted_copy_name(
            name_of(d), self.replica.identity.replica, self.clock.now_ms() % 1_000_000
        )
        target = join_path(parent_of(d), name)
        await self.executor.run(self.fs.rename, d, target)
        return target

    async def _local_changed_file(
        self, d: str, b: SyncedFile, uploaded: Uploaded, after: FileInfo, report: PassReport
    ) -> None:
        synced = self.tree.lookup(b.path)
        synced_executable = (
            synced.version.executable
            if synced is not None
            and synced.version is not None
            and synced.version.version_id == b.version
            else b.executable
        )
        if (
            b.content is not None
            and content_hash_of(b.content) == content_hash_of(uploaded.content)
            and after.executable == synced_executable
        ):
            self.store.put_file(  # touched (or only moved), not changed
                dataclasses.replace(
                    b,
                    disk_path=d,
                    size=after.size,
                    mtime_ns=after.mtime_ns,
                    inode=after.inode,
                    executable=after.executable,
                    synced_ns=self.clock.now_ms() * 1_000_000,
                    state=SyncState.SYNCED,
                    content_hash=None,
                )
            )
            return
        content = FileContent(
            uploaded.content, uploaded.size, after.mtime_ns // 1_000_000, after.executable
        )
        try:
            entry = self.tree.lookup(b.path)
            if entry is None or entry.id != b.entry:
                # Deleted or replaced remotely meanwhile: an edit beats a delete; it comes back.
                if entry is not None:
                    if not await self._still_uploaded(d, after, report):
                        return
                    d = await self._set_aside(d)
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
                if not await self._still_uploaded(d, after, report):
                    return
                self.store.forget_file(b.path)
                aside = await self._set_aside(d)
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
        if entry is not None:
            # Unless deleted below, the tree keeps something here that the disk lost: this
            # pass must write it again, even if nothing is published.
            self.apply_pending = True
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


def _info(
    path: str, kind: FileKind, size: int, mtime_ns: int, inode: int, executable: bool = False
) -> FileInfo:
    return FileInfo(path.rpartition("/")[2], kind, size, mtime_ns, inode, executable)


def _after(path: str, moves: list[tuple[str, str]]) -> str:
    """Where tree path ``path`` is once the folder moves ``moves`` (old, new) are made."""
    for old, new in moves:
        if path == old or path.startswith(old + "/"):
            path = new + path[len(old) :]
    return path
