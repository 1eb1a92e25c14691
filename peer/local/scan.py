"""The scanner: walk the folder through the FileSystem seam and say what changed since the index.

An unchanged file costs one ``lstat`` (from the directory listing) and no read: same kind, size,
mtime and inode as indexed. A file whose mtime was within the filesystem's mtime resolution of the
moment it was indexed is *racy* (git's term): a same-size edit in that window would keep its mtime,
so it is re-hashed until it is not racy any more. A changed file is reported only once it is
stable: the same size and mtime across two looks ``stable_interval_s`` apart and after hashing.
Symlinks are recorded with their target, never followed. Moves (a case-only rename included) are
recognised by content hash, preferring the same inode, and whole directories by inode.

Changes come ordered: moves first, shallowest first; every other change names a path as it is
after those moves. Per-file problems are ``FileError`` rows, never exceptions: a directory that
cannot be read hides nothing as deleted.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import blake3

from peer.fs.base import READ_BLOCK, FileInfo, FileKind, FileSystem, same_version
from peer.fs.errors import (
    FsError,
    NotADirError,
    NotFoundError,
    SymlinkInPathError,
    UnsafePathError,
)
from peer.fs.paths import is_temp_name, is_within, join, name_of
from peer.local.ignore import IGNORE_FILE, IgnoreRules
from peer.local.index import FileError, IndexEntry, IndexRow, LocalIndex, SyncState, entry_of
from seams import Clock, Executor

_HASH_BATCH = 128  # files per executor call: amortises the hop, still spreads over the pool

EntryKept = Callable[[str, str], bool]
"""(path, entry id) → whether the share's tree still holds that entry where the index row at
``path`` last synced it."""
_GONE = (NotFoundError, SymlinkInPathError, NotADirError)


class ChangeKind(enum.StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"
    TYPE_CHANGED = "type_changed"  # file <-> dir <-> symlink at one path
    MOVED = "moved"  # from ``src`` to ``path``


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    path: str
    new: IndexEntry | None  # what is on disk now (None: deleted)
    old: IndexEntry | None  # what the index had (None: added)
    src: str | None = None  # a move's origin


@dataclass(slots=True)
class ScanResult:
    changes: list[Change] = field(default_factory=list)
    refreshed: list[IndexEntry] = field(default_factory=list)  # touched, same bytes: no change
    unstable: list[str] = field(default_factory=list)  # still being written: scan again later
    now_ignored: list[str] = field(default_factory=list)  # indexed paths an ignore rule now hides
    errors: list[FileError] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)  # ours, left by a crash: sweep them
    # Paths whose index row names an entry the tree no longer holds there: what is on disk
    # now is new, not that entry (see ``Scanner.entry_kept``).
    detached: list[str] = field(default_factory=list)
    files_seen: int = 0
    files_hashed: int = 0


@dataclass(slots=True)
class _Hashed:
    hashes: dict[str, bytes] = field(default_factory=dict)
    unstable: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # vanished since the walk
    errors: list[FileError] = field(default_factory=list)


class _Indexed:
    """What the index holds under the scan's roots: bare rows, each made an entry only when
    looked at (on an unchanged folder, none is)."""

    __slots__ = ("_entries", "rows")

    def __init__(self) -> None:
        self.rows: dict[str, IndexRow] = {}
        self._entries: dict[str, IndexEntry] = {}

    def get(self, path: str) -> IndexEntry | None:
        entry = self._entries.get(path)
        if entry is None:
            row = self.rows.get(path)
            if row is None:
                return None
            entry = self._entries[path] = entry_of(row)
        return entry


# Positions in an IndexRow.
_KIND, _SIZE, _MTIME, _INODE, _EXEC, _HASH, _AT, _STATE = 1, 2, 3, 4, 5, 6, 7, 8
_GONE_STATES = (SyncState.DELETED.value, SyncState.IGNORED.value)
_LEFT_STATES = (SyncState.DELETED, SyncState.IGNORED)


@dataclass(slots=True)
class _Walk:
    observed: dict[str, FileInfo] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)  # unreadable: say nothing about below them
    ignored: list[str] = field(default_factory=list)  # scan roots that are ignored
    errors: list[FileError] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)


def hash_file(fs: FileSystem, path: str) -> bytes:
    """BLAKE3 of a file's bytes, for local change detection only (not a chunk or block id)."""
    hasher = blake3.blake3()
    with fs.open_read(path) as stream:
        while block := stream.read(READ_BLOCK):
            hasher.update(block)
    return hasher.digest()


def hash_link(target: str) -> bytes:
    return blake3.blake3(b"symlink\x00" + target.encode("utf-8", "surrogateescape")).digest()


def minimal_roots(paths: Iterable[str]) -> list[str]:
    """Drop every path that lies under another one: ``["a", "a/b", "c"]`` -> ``["a", "c"]``."""
    out: list[str] = []
    for path in sorted(set(paths), key=lambda p: (p.count("/"), p)):
        if not any(is_within(path, root) for root in out):
            out.append(path)
    return sorted(out)


class Scanner:
    """Scans one share's folder against its index. Owned by the share's task, like the index."""

    def __init__(
        self,
        fs: FileSystem,
        index: LocalIndex,
        *,
        executor: Executor,
        clock: Clock,
        stable_interval_s: float = 0.25,
        ignore: IgnoreRules | None = None,
        marker: str | None = None,
        entry_kept: EntryKept | None = None,
    ) -> None:
        """``marker``: a path (e.g. ``".drift"``) that must exist in the folder once it is set
        up, as syncthing's ``.stfolder``: an empty mount point then reads as "not mounted", not
        as "the user deleted everything".

        ``entry_kept``: the share's tree, asked about a path that is back on disk (or back as
        another kind) while its index row still names the entry deleted (or replaced) there.
        The path keeps that entry only if the tree still holds it where the row synced it; an
        entry the tree moved elsewhere (another device's move) or deleted is not what is on
        disk now. Without it, the row's entry is kept."""
        self.fs = fs
        self.index = index
        self.executor = executor
        self.clock = clock
        self.stable_interval_s = stable_interval_s
        self._ignore_fixed = ignore
        self.ignore = ignore or IgnoreRules.parse("", case_insensitive=fs.case_insensitive)
        self._ignore_stamp: FileInfo | None = None
        self._ignore_loaded = False
        self.marker = marker
        self.entry_kept = entry_kept

    def _reload_ignore(self) -> None:
        """Re-read ``.driftignore`` when it changed (one lstat per scan otherwise)."""
        if self._ignore_fixed is not None:
            return
        try:
            stamp: FileInfo | None = self.fs.lstat(IGNORE_FILE)
        except FsError:
            stamp = None
        if not self._ignore_loaded or stamp != self._ignore_stamp:
            self.ignore = IgnoreRules.load(self.fs)
            self._ignore_stamp = stamp
            self._ignore_loaded = True

    def _now_ms(self) -> int:
        return self.clock.now_ms()

    async def scan(self, under: Iterable[str] = ("",)) -> ScanResult:
        """Compare the folder (or the subtrees ``under``) with the index."""
        roots = minimal_roots(under)
        started_ns = self.clock.now_ms() * 1_000_000
        walk, indexed = await self.executor.run(self._walk, roots)
        result = ScanResult(errors=list(walk.errors), temp_files=sorted(walk.temp_files))
        to_hash = self._needs_hash(walk, indexed)
        hashes: dict[str, bytes] = {}
        if to_hash:
            await self.clock.sleep(self.stable_interval_s)
            batches = [to_hash[i : i + _HASH_BATCH] for i in range(0, len(to_hash), _HASH_BATCH)]
            for part in await asyncio.gather(
                *(self.executor.run(self._hash_batch, batch) for batch in batches)
            ):
                hashes.update(part.hashes)
                result.unstable.extend(part.unstable)
                result.errors.extend(part.errors)
                for path in part.gone:
                    walk.observed.pop(path, None)
                for error in part.errors:
                    walk.observed.pop(error.path, None)
                    walk.unknown.append(error.path)
        result.files_hashed = len(hashes)
        self._classify(walk, indexed, hashes, started_ns, result)
        return result

    # -- the blocking part: walk -------------------------------------------------------------

    def _walk(self, roots: list[str]) -> tuple[_Walk, _Indexed]:
        self._reload_ignore()
        walk = _Walk()
        indexed = _Indexed()
        if self.marker is not None and not self._marker_present():
            message = (
                f"the folder marker {self.marker!r} is missing: is the folder's disk mounted? "
                "(nothing is treated as deleted until it is back)"
            )
            walk.errors.append(self._error("", "scan", message))
            walk.unknown.append("")
            return walk, indexed
        for root in roots:
            indexed.rows.update(self.index.rows_blocking(root))
            if root == "":
                self._walk_dir("", walk)
                continue
            if not _is_utf8(root):
                continue  # a full scan reports the name as a per-file error
            try:
                info = self.fs.lstat(root)
            except (*_GONE, UnsafePathError):
                continue
            except FsError as exc:
                walk.errors.append(self._error(root, "scan", exc.reason))
                walk.unknown.append(root)
                continue
            if self.ignore.is_ignored(root, info.kind is FileKind.DIR):
                walk.ignored.append(root)
                continue
            if info.kind is FileKind.OTHER:
                continue
            walk.observed[root] = replace(info, name=root)
            if info.kind is FileKind.DIR:
                self._walk_dir(root, walk)
        return walk, indexed

    def _marker_present(self) -> bool:
        try:
            self.fs.lstat(self.marker or "")
        except FsError:
            return False
        return True

    def _walk_dir(self, top: str, walk: _Walk) -> None:
        observed, matches, fs = walk.observed, self.ignore.matches, self.fs
        stack = [top]
        while stack:
            directory = stack.pop()
            try:
                infos = fs.list_dir(directory)
            except _GONE as exc:
                if directory == "":  # the folder itself: unmounted, moved away? never "deleted"
                    walk.errors.append(self._error("", "scan", f"the folder is missing: {exc}"))
                    walk.unknown.append("")
                continue  # removed, or replaced by a link, since its parent was listed
            except FsError as exc:
                walk.errors.append(self._error(directory, "scan", exc.reason))
                walk.unknown.append(directory)
                continue
            for info in infos:
                name = info.name
                if not name.isascii() and not _is_utf8(name):
                    where = join(
                        directory,
                        name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                    )
                    walk.errors.append(
                        self._error(
                            where, "scan", "the name is not valid UTF-8: rename it to sync it"
                        )
                    )
                    continue
                kind = info.kind
                if kind is FileKind.OTHER:
                    continue
                path = f"{directory}/{name}" if directory else name
                is_dir = kind is FileKind.DIR
                if matches(path, is_dir):
                    if is_temp_name(name):
                        walk.temp_files.append(path)
                    continue
                observed[path] = info
                if is_dir:
                    stack.append(path)

    def _error(self, path: str, op: str, reason: str) -> FileError:
        return FileError(path, op, reason, self._now_ms(), None)

    # -- deciding what to read ---------------------------------------------------------------

    def _needs_hash(self, walk: _Walk, indexed: _Indexed) -> list[tuple[str, FileInfo]]:
        resolution = self.fs.mtime_resolution_ns
        rows = indexed.rows
        synced = SyncState.SYNCED.value
        out: list[tuple[str, FileInfo]] = []
        for path, info in walk.observed.items():
            if info.kind is FileKind.DIR:
                continue
            old = rows.get(path)
            if (
                old is None
                # a synced entry's hash may be unknown (written by a download): its stat counts
                or (old[_HASH] is None and old[_STATE] != synced)
                or old[_STATE] in _GONE_STATES
                or old[_KIND] != info.kind
                or old[_SIZE] != info.size
                or old[_MTIME] != info.mtime_ns
                or old[_INODE] != info.inode
                or bool(old[_EXEC]) != info.executable  # a chmod changes no mtime
                or old[_MTIME] + resolution > old[_AT]  # racy: may hide an edit
            ):
                out.append((path, info))
        return out

    def _hash_batch(self, items: list[tuple[str, FileInfo]]) -> _Hashed:
        """Second look (an interval after the walk's), hash, third look."""
        out = _Hashed()
        for path, first in items:
            try:
                second = self.fs.lstat(path)
                if not same_version(first, second):
                    out.unstable.append(path)
                    continue
                if second.kind is FileKind.SYMLINK:
                    digest = hash_link(self.fs.read_link(path))
                else:
                    digest = hash_file(self.fs, path)
                third = self.fs.lstat(path)
            except _GONE:
                out.gone.append(path)
                continue
            except FsError as exc:
                out.errors.append(self._error(path, "read", exc.reason))
                continue
            if same_version(second, third):
                out.hashes[path] = digest
            else:
                out.unstable.append(path)
        return out

    # -- classification ----------------------------------------------------------------------

    def _classify(
        self,
        walk: _Walk,
        indexed: _Indexed,
        hashes: dict[str, bytes],
        started_ns: int,
        result: ScanResult,
    ) -> None:
        unstable = set(result.unstable)
        added: dict[str, IndexEntry] = {}
        deleted: dict[str, IndexEntry] = {}
        other: list[Change] = []
        for path, info in walk.observed.items():
            if path in unstable:
                continue
            if info.kind is not FileKind.DIR:
                result.files_seen += 1
                if path not in hashes:
                    continue  # unchanged: the stat matched and it was not racy
            old = indexed.get(path)
            new = self._entry(path, info, hashes.get(path), started_ns, old)
            if (
                old is not None
                and old.node_id is not None
                and (old.state in _LEFT_STATES or old.kind is not info.kind)
                and not self._still_here(path, old.node_id)
            ):
                new = replace(new, node_id=None, version=None, chunks=())
                result.detached.append(path)
            if old is None or old.state in _LEFT_STATES:
                added[path] = replace(new, state=SyncState.NEW)
            elif old.kind is not info.kind:
                other.append(Change(ChangeKind.TYPE_CHANGED, path, new, old))
            elif info.kind is FileKind.DIR:
                continue  # a directory's own mtime changes with its entries: nothing to say
            elif old.content_hash is None and _same_stat(old, info):
                result.refreshed.append(replace(new, state=old.state))  # racy, now hashed
            elif new.content_hash != old.content_hash or new.executable != old.executable:
                other.append(Change(ChangeKind.MODIFIED, path, new, old))
            else:
                result.refreshed.append(replace(new, state=old.state))
        observed = walk.observed
        for path, row in indexed.rows.items():
            if path in observed or row[_STATE] in _GONE_STATES:
                continue
            old = indexed.get(path)
            assert old is not None
            if any(is_within(path, u) for u in walk.unknown):
                continue  # could not look: say nothing, above all not "deleted"
            if any(is_within(path, i) for i in walk.ignored) or self.ignore.is_ignored(
                path, old.kind is FileKind.DIR
            ):
                result.now_ignored.append(path)
            else:
                deleted[path] = old
        moves, rest = _pair_moves(added, deleted)
        for path, old in deleted.items():
            rest.append(Change(ChangeKind.DELETED, path, None, old))
        for path, new in added.items():
            rest.append(Change(ChangeKind.ADDED, path, new, None))
        for change in other:
            assert change.new is not None
            rest.append(replace(change, new=replace(change.new, state=SyncState.MODIFIED)))
        result.changes.extend(moves)  # in the order they must be applied
        result.changes.extend(sorted(rest, key=lambda c: c.path))

    def _still_here(self, path: str, node_id: str) -> bool:
        return self.entry_kept is None or self.entry_kept(path, node_id)

    @staticmethod
    def _entry(
        path: str,
        info: FileInfo,
        digest: bytes | None,
        started_ns: int,
        old: IndexEntry | None,
    ) -> IndexEntry:
        return IndexEntry(
            path=path,
            kind=info.kind,
            size=info.size,
            mtime_ns=info.mtime_ns,
            inode=info.inode,
            executable=info.executable,
            content_hash=digest,
            indexed_at_ns=started_ns,
            state=old.state if old is not None else SyncState.NEW,
            node_id=old.node_id if old is not None else None,
            version=old.version if old is not None else None,
            chunks=old.chunks if old is not None else (),
        )


def _same_stat(old: IndexEntry, info: FileInfo) -> bool:
    return (old.kind, old.size, old.mtime_ns, old.inode, old.executable) == (
        info.kind,
        info.size,
        info.mtime_ns,
        info.inode,
        info.executable,
    )


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _after(path: str, moves: list[tuple[str, str]]) -> str:
    """Where ``path`` is once ``moves`` (src, dst) have been applied in order."""
    for src, dst in moves:
        if is_within(path, src):
            path = dst + path[len(src) :]
    return path


def _pair_moves(
    added: dict[str, IndexEntry], deleted: dict[str, IndexEntry]
) -> tuple[list[Change], list[Change]]:
    """Turn delete+add pairs into moves, removing the pairs from ``added`` and ``deleted``.

    Returns the moves, in the order to apply them (each ``src`` as it is after the moves before
    it), and the modifications found below moved directories.

    Directories pair by inode; whatever lies below a moved directory and is unchanged is implied
    by the directory's move. Files and symlinks pair by content hash, preferring the same inode,
    then the same name; empty files only by inode (all empty files hash alike).
    """
    moves: list[Change] = []
    modified: list[Change] = []
    applied: list[tuple[str, str]] = []
    dir_by_inode = {e.inode: e for e in deleted.values() if e.kind is FileKind.DIR}
    dir_moves: list[tuple[str, str]] = []
    for path in sorted(added, key=lambda p: (p.count("/"), p)):
        new = added[path]
        old = dir_by_inode.get(new.inode) if new.kind is FileKind.DIR else None
        if old is None or old.path not in deleted:
            continue
        implied = any(
            is_within(old.path, src) and path == dst + old.path[len(src) :]
            for src, dst in dir_moves
        )
        dir_moves.append((old.path, path))
        del added[path], deleted[old.path]
        if not implied:
            src_now = _after(old.path, applied)
            applied.append((src_now, path))
            moves.append(Change(ChangeKind.MOVED, path, new, old, src=src_now))
    # below a moved directory: an unchanged entry is implied; a changed one is reported at its
    # new path (deletions included), since the index re-keys the subtree with the move
    for src, dst in sorted(dir_moves, key=lambda m: -m[0].count("/")):
        for path in [p for p in deleted if is_within(p, src)]:
            old = deleted.pop(path)
            moved_path = dst + path[len(src) :]
            moved_old = replace(old, path=moved_path)
            new = added.pop(moved_path, None)
            if new is None:
                deleted[moved_path] = moved_old
            elif (
                new.kind is not old.kind
                or new.content_hash != old.content_hash
                or (new.executable != old.executable)
            ):
                modified.append(
                    Change(
                        ChangeKind.MODIFIED,
                        moved_path,
                        replace(
                            new,
                            state=SyncState.MODIFIED,
                            node_id=old.node_id,
                            version=old.version,
                            chunks=old.chunks,
                        ),
                        moved_old,
                    )
                )
    by_hash: dict[bytes, list[IndexEntry]] = {}
    for old in deleted.values():
        if old.kind is not FileKind.DIR and old.content_hash is not None:
            by_hash.setdefault(old.content_hash, []).append(old)
    for path in sorted(added):
        new = added[path]
        candidates = [
            c
            for c in by_hash.get(new.content_hash or b"", ())
            if c.path in deleted and c.kind is new.kind and (new.size > 0 or c.inode == new.inode)
        ]
        if not candidates:
            continue
        old = min(
            candidates,
            key=lambda c: (c.inode != new.inode, name_of(c.path) != name_of(path), c.path),
        )
        del added[path], deleted[old.path]
        moved = replace(
            new,
            state=SyncState.MODIFIED,
            node_id=old.node_id,
            version=old.version,
            chunks=old.chunks,
        )
        moves.append(Change(ChangeKind.MOVED, path, moved, old, src=old.path))
    # A file whose bytes were never hashed here (written by a download) pairs by its inode,
    # size and mtime: renamed, not rewritten.
    unhashed = {
        (e.inode, e.size, e.mtime_ns): e
        for e in deleted.values()
        if e.kind is FileKind.FILE and e.content_hash is None and e.inode
    }
    for path in sorted(added):
        new = added[path]
        old = unhashed.pop((new.inode, new.size, new.mtime_ns), None)
        if old is None or new.kind is not FileKind.FILE or old.path not in deleted:
            continue
        del added[path], deleted[old.path]
        moved = replace(
            new,
            state=SyncState.MODIFIED,
            node_id=old.node_id,
            version=old.version,
            chunks=old.chunks,
        )
        moves.append(Change(ChangeKind.MOVED, path, moved, old, src=old.path))
    return moves, modified


async def record_scan(index: LocalIndex, result: ScanResult) -> None:
    """Write a scan's findings into the index: the engine's starting point for publishing."""
    await index.detach(result.detached)
    for change in result.changes:
        if change.kind is ChangeKind.MOVED and change.src is not None:
            await index.move(change.src, change.path)
    observed = [c.new for c in result.changes if c.new is not None]
    await index.observe([*observed, *result.refreshed])
    deleted = [c.path for c in result.changes if c.kind is ChangeKind.DELETED]
    await index.set_state(deleted, SyncState.DELETED)
    await index.set_state(result.now_ignored, SyncState.IGNORED)
    for error in result.errors:
        await index.record_error(error)
    await index.clear_errors(entry.path for entry in observed)


__all__ = [
    "Change",
    "ChangeKind",
    "ScanResult",
    "Scanner",
    "hash_file",
    "hash_link",
    "minimal_roots",
    "record_scan",
]
