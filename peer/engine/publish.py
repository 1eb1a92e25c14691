"""Local → tree: new, changed, moved and deleted entries on disk become tree operations.

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
from peer.engine.scan import ScanResult
from peer.engine.transfer import Uploaded, upload_file
from peer.fs import (
    FileInfo,
    FileKind,
    FsError,
    same_version,
)
from protocol.chain import WRITERS
from storage.errors import StorageError


class Publisher(SyncParts):
    # -- local → tree ----------------------------------------------------------------------------

    def _writable(self) -> bool:
        return self.replica.role in WRITERS

    async def publish_local(
        self, scan: ScanResult, report: PassReport, base: dict[str, SyncedFile] | None = None
    ) -> None:
        """Turn what changed on disk since ``base`` (default: as stored) into tree operations."""
        for path in scan.leftovers:
            # A write killed half-way (ours never overlap a scan: one pass at a time per share).
            with contextlib.suppress(FsError):
                await self.executor.run(self.fs.remove_file, path)
        self.store.clear_file_errors("skip")
        self.store.clear_file_errors("scan")
        for path, why in scan.skipped.items():
            self._file_error(path, "skip", why)
        for path, why in scan.unreadable.items():
            self._file_error(path, "scan", why)
        base = self.store.files() if base is None else base
        by_disk = {b.disk_path: b for b in base.values()}
        entries = scan.entries
        new = {d: i for d, i in entries.items() if d not in by_disk}
        gone = {d: b for d, b in by_disk.items() if d not in entries}
        changed: dict[str, tuple[SyncedFile, FileInfo]] = {}
        for d, b in by_disk.items():
            info = entries.get(d)
            if info is None:
                continue
            kind = "dir" if info.kind is FileKind.DIR else "file"
            if kind != b.kind:
                gone[d] = b
                new[d] = info
            elif kind == "file" and (
                (info.size, info.mtime_ns, info.inode, info.executable)
                != (b.size, b.mtime_ns, b.inode, b.executable)
                # Racy: changed in the same mtime tick as it was read; only its bytes can tell.
                or info.mtime_ns + self.fs.mtime_resolution_ns >= b.synced_ns
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
        new: dict[str, FileInfo],
        gone: dict[str, SyncedFile],
        report: PassReport,
    ) -> None:
        """A vanished path and a new one with the same inode (and kind) is a move or rename."""
        by_inode = {(i.inode, i.kind is FileKind.DIR): d for d, i in new.items() if i.inode}
        for old_disk in sorted(gone, key=depth_of):
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
                    if self.tree.lookup(target) is None or name_of(target) != name_of(b.path):
                        self._emit(
                            self.tree.move(
                                b.path,
                                parent_of(target),
                                new_name=name_of(target),
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
                        dataclasses.replace(row, path=new_path, disk_path=new_disk_path)
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
            name_of(d), self.replica.identity.replica, self.clock.now_ms() % 1_000_000
        )
        target = join_path(parent_of(d), name)
        await self.executor.run(self.fs.rename, d, target)
        return target

    async def _local_changed_file(
        self, d: str, b: SyncedFile, uploaded: Uploaded, after: FileInfo, report: PassReport
    ) -> None:
        if (
            b.content is not None
            and content_hash_of(b.content) == content_hash_of(uploaded.content)
            and after.executable == b.executable
        ):
            self.store.put_file(  # touched, not changed
                dataclasses.replace(
                    b,
                    size=after.size,
                    mtime_ns=after.mtime_ns,
                    inode=after.inode,
                    executable=after.executable,
                    synced_ns=self.clock.now_ms() * 1_000_000,
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
