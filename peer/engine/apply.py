"""Tree → disk: moves as moves, deletions to the local trash, new versions downloaded.

Each write is guarded: a file changed on disk since it was last synced is never replaced (the
next pass publishes it, as a conflicted copy if need be), and every version is verified before
it is renamed into place.
"""

from __future__ import annotations

import dataclasses
import hashlib

from crdt.view import Entry, EntryKind
from peer.device.store import SyncedFile
from peer.engine.parts import (
    PassReport,
    SyncParts,
    depth_of,
    join_path,
    parent_of,
)
from peer.engine.transfer import download_file
from peer.errors import DriftError, IntegrityError, RelayRefused
from peer.fs import (
    MISSING,
    FileInfo,
    FileKind,
    FsError,
)
from peer.fs.paths import temp_name
from peer.local.index import SyncState
from storage.errors import StorageError


class Applier(SyncParts):
    # -- tree → disk -----------------------------------------------------------------------------

    async def apply_remote(self, report: PassReport) -> None:
        listing: dict[str, Entry] = dict(self.tree.walk())
        by_id = {e.id: p for p, e in listing.items()}
        # 1. Entries no longer at their base path: moved (move on disk) or gone (to the trash).
        displaced = await self._settle_moves(listing, by_id, report)
        base = self.store.files()
        if displaced:
            base = self.store.files()
            for path in sorted(base, key=lambda p: -depth_of(p)):
                b = base[path]
                entry = listing.get(path)
                if entry is not None and entry.id == b.entry:
                    continue
                if by_id.get(b.entry) is not None:
                    continue
                await self._remote_gone(b, report)
            base = self.store.files()
        # 2. Entries the disk lacks, or holds in another version.
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
                if b.executable != entry.version.executable:
                    await self._remote_mode(path, b, entry, report)
                    continue
                self.store.put_file(
                    dataclasses.replace(b, entry=entry.id, version=entry.version.version_id)
                )
                continue
            wanted.append(path)

        async def fetch(path: str) -> None:
            await self._remote_file(path, listing[path], base.get(path), report)

        self._dirs_ready = set()
        try:
            await self._bounded(
                wanted,
                fetch,
                lambda p: listing[p].version.size,  # type: ignore[union-attr]
                "download",
            )
        finally:
            self._dirs_ready = None

    async def _settle_moves(
        self, listing: dict[str, Entry], by_id: dict[str, str], report: PassReport
    ) -> bool:
        """Move every displaced entry that the tree holds elsewhere to its new path.

        Re-read after each move until nothing is left to move: a folder's move re-keys the rows
        under it, and those may be displaced in turn. Targets go parents-first, so a folder is
        moved into place before anything is moved into it; a target taken by another displaced
        entry (a swap, a rotation) is freed by parking that entry under a temp name.
        Returns whether anything was displaced at all.
        """
        tried: set[tuple[str, str]] = set()  # a move that did not happen is not tried again
        parked: set[str] = set()
        displaced_any = False
        while True:
            base = self.store.files()
            pending: list[tuple[str, str]] = []
            for path, b in base.items():
                entry = listing.get(path)
                if entry is not None and entry.id == b.entry:
                    continue
                displaced_any = True
                new_path = by_id.get(b.entry)
                if new_path is not None and (path, new_path) not in tried:
                    pending.append((path, new_path))
            if not pending:
                return displaced_any
            # Strictly the shallowest target first: a deeper move whose target happens to be
            # free may lie inside a folder that is itself about to move.
            path, taken = min(pending, key=lambda m: (depth_of(m[1]), m[1]))
            if taken not in base:
                tried.add((path, taken))
                await self._remote_move(base[path], taken, report)
                continue
            occupant = base[taken]
            if (here := listing.get(taken)) is not None and here.id == occupant.entry:
                # The entry is in place already: the row at `path` is a stale second copy.
                tried.add((path, taken))
                await self._remote_gone(base[path], report)
                continue
            if taken in parked:
                return displaced_any  # could not be moved aside (changed here): next pass
            parked.add(taken)
            if by_id.get(occupant.entry) is None:
                await self._remote_gone(occupant, report)  # deleted: out of the way for good
                continue
            # Moved elsewhere too: aside under one of our temp names (the scanner never reads
            # them) until its own target is free; its row is keyed by a path no tree entry has.
            token = hashlib.blake2b(occupant.entry.encode(), digest_size=8).digest()
            aside = temp_name(token)
            await self._remote_move(
                occupant,
                join_path(parent_of(taken), aside),
                report,
                disk_target=join_path(parent_of(occupant.disk_path), aside),
            )

    async def _disk_matches(self, b: SyncedFile) -> FileInfo | None:
        if b.state is not SyncState.SYNCED:
            return None  # changed here since (or ignored): never overwritten, moved or trashed
        try:
            info = await self.executor.run(self.fs.lstat, b.disk_path)
        except FsError:
            return None
        if b.kind == "dir":
            return info if info.kind is FileKind.DIR else None
        same = (info.size, info.mtime_ns, info.inode) == (b.size, b.mtime_ns, b.inode)
        return info if same else None

    async def _remote_move(
        self, b: SyncedFile, new_path: str, report: PassReport, disk_target: str | None = None
    ) -> None:
        info = await self._disk_matches(b)
        if info is None:
            return  # changed locally: the next pass publishes it
        target = disk_target or self.disk_path(new_path)
        try:
            await self._ensure_dir(parent_of(target))
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
                    dataclasses.replace(
                        row,
                        path=new_row_path,
                        disk_path=target + row.disk_path[len(b.disk_path) :],
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

    async def _remote_mode(
        self, path: str, b: SyncedFile, entry: Entry, report: PassReport
    ) -> None:
        """The same bytes, made executable or not (a chmod elsewhere): no download."""
        assert entry.version is not None
        if await self._disk_matches(b) is None:
            return  # changed locally since: the next pass publishes it
        try:
            await self.executor.run(
                self.fs.set_meta, b.disk_path, executable=entry.version.executable
            )
            info = await self.executor.run(self.fs.lstat, b.disk_path)
        except FsError as exc:
            self._file_error(path, "chmod", str(exc))
            report.errors += 1
            return
        self._record(path, b.disk_path, info, entry.version.manifest)

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
            await self._ensure_dir(parent_of(disk))
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
                entry.version.executable,
                lan=self.lan,
                relay_away=self.relay_down is not None,
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
