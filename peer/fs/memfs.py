"""``MemFileSystem``: the synced folder in memory, for simulations and tests.

Like syncthing's fakefs it is chosen by URI (``mem://?seed=7&case_insensitive=1&mtime_res_s=2``),
and it models what a crash keeps. Each file has live bytes and durable bytes (those at its last
fsync); each directory has live entries and durable entries (those at its last fsync). ``crash()``
returns the folder a reboot would find: durable entries only, each file with its durable bytes.
A crash point (``arm_crash("write.before_rename")``) kills the "process" in the middle of an
operation, so a simulation can check that nothing acknowledged is lost.
"""

from __future__ import annotations

import io
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from peer.fs.base import (
    MISSING,
    Expectation,
    FileInfo,
    FileKind,
    same_version,
)
from peer.fs.errors import (
    AlreadyExistsError,
    ChangedUnderneathError,
    DirNotEmptyError,
    FsError,
    IsADirError,
    NotADirError,
    NotFoundError,
    SimulatedCrash,
    SymlinkInPathError,
    UnsafePathError,
)
from peer.fs.paths import join, name_key, split_path, temp_name
from peer.fs.trash import move_to_trash
from seams import Clock, SeededRandom, SystemClock

CRASH_POINTS = frozenset(
    {
        "write.before_fsync",  # temp file written, not yet fsynced
        "write.before_rename",  # temp file durable, not yet renamed over the target
        "write.before_dir_fsync",  # renamed, the directory entry not yet durable
        "rename.before_dir_fsync",
        "mkdir.before_dir_fsync",
        "rmdir.before_dir_fsync",
    }
)

_ROOT_INO = 1


@dataclass
class _Node:
    ino: int
    kind: FileKind
    data: bytes = b""  # file bytes; a symlink's target, UTF-8
    mtime_ns: int = 0
    executable: bool = False
    entries: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (name, ino)
    durable_data: bytes = b""
    durable_mtime_ns: int = 0
    durable_executable: bool = False
    durable_entries: dict[str, tuple[str, int]] = field(default_factory=dict)
    # What ``lstat``/``list_dir`` said last (kind and ino never change): handed out again while
    # it still holds, since building a frozen FileInfo costs more than checking this one.
    info: FileInfo | None = field(default=None, compare=False, repr=False)


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on")


class MemFileSystem:
    def __init__(
        self,
        *,
        seed: int = 0,
        case_insensitive: bool = False,
        mtime_resolution_ns: int = 1,
        clock: Clock | None = None,
    ) -> None:
        if mtime_resolution_ns < 1:
            raise ValueError("mtime resolution is at least 1 ns")
        self.seed = seed
        self._random = SeededRandom(seed).fork("memfs")
        self._case_insensitive = case_insensitive
        self._mtime_resolution_ns = mtime_resolution_ns
        self._clock = clock or SystemClock()
        self._nodes: dict[int, _Node] = {_ROOT_INO: _Node(_ROOT_INO, FileKind.DIR)}
        self._next_ino = _ROOT_INO + 1
        self._armed: dict[str, int] = {}
        self._dead: str | None = None

    @classmethod
    def from_uri(cls, uri: str, *, clock: Clock | None = None) -> MemFileSystem:
        """``mem://?seed=7&case_insensitive=1&mtime_res_s=2&crash=write.before_rename&crash_nth=1``."""
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme != "mem":
            raise ValueError(f"not a mem:// URI: {uri!r}")
        params = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        known = {"seed", "case_insensitive", "mtime_res_s", "crash", "crash_nth"}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown mem:// options {sorted(unknown)}; known: {sorted(known)}")
        fs = cls(
            seed=int(params.get("seed", "0")),
            case_insensitive=_flag(params.get("case_insensitive", "0")),
            mtime_resolution_ns=max(1, round(float(params.get("mtime_res_s", "0")) * 1e9)),
            clock=clock,
        )
        if "crash" in params:
            fs.arm_crash(params["crash"], nth=int(params.get("crash_nth", "1")))
        return fs

    def __repr__(self) -> str:
        return (
            f"MemFileSystem(seed={self.seed}, case_insensitive={self._case_insensitive}, "
            f"mtime_resolution_ns={self._mtime_resolution_ns})"
        )

    @property
    def case_insensitive(self) -> bool:
        return self._case_insensitive

    @property
    def mtime_resolution_ns(self) -> int:
        return self._mtime_resolution_ns

    # -- crashes -----------------------------------------------------------------------------

    def arm_crash(self, point: str, *, nth: int = 1) -> None:
        """Die at the ``nth`` time ``point`` is reached (see ``CRASH_POINTS``)."""
        if point not in CRASH_POINTS:
            raise ValueError(f"unknown crash point {point!r}; known: {sorted(CRASH_POINTS)}")
        if nth < 1:
            raise ValueError("nth counts from 1")
        self._armed[point] = nth

    @property
    def crashed(self) -> bool:
        return self._dead is not None

    def _point(self, point: str) -> None:
        left = self._armed.get(point)
        if left is None:
            return
        if left > 1:
            self._armed[point] = left - 1
            return
        del self._armed[point]
        self._dead = point
        raise SimulatedCrash(point)

    def crash(self) -> MemFileSystem:
        """Kill this instance (any later call raises) and return what a reboot finds on disk."""
        self._dead = self._dead or "crash()"
        after = MemFileSystem(
            seed=self.seed + 1,
            case_insensitive=self._case_insensitive,
            mtime_resolution_ns=self._mtime_resolution_ns,
            clock=self._clock,
        )
        after._next_ino = self._next_ino
        seen: set[int] = set()
        todo = [_ROOT_INO]
        while todo:
            ino = todo.pop()
            if ino in seen:
                continue
            seen.add(ino)
            old = self._nodes[ino]
            node = _Node(
                ino,
                old.kind,
                data=old.durable_data,
                mtime_ns=old.durable_mtime_ns,
                executable=old.durable_executable,
                entries=dict(old.durable_entries),
                durable_data=old.durable_data,
                durable_mtime_ns=old.durable_mtime_ns,
                durable_executable=old.durable_executable,
                durable_entries=dict(old.durable_entries),
            )
            after._nodes[ino] = node
            todo.extend(child for _, child in node.entries.values())
        return after

    def _alive(self) -> None:
        if self._dead is not None:
            raise SimulatedCrash(f"filesystem used after crash at {self._dead}")

    # -- lookup ------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return name_key(name, self._case_insensitive)

    def _now_ns(self) -> int:
        ns = self._clock.now_ms() * 1_000_000
        return ns - ns % self._mtime_resolution_ns

    def _dir_node(self, parts: tuple[str, ...], op: str, path: str) -> _Node:
        node = self._nodes[_ROOT_INO]
        for i, part in enumerate(parts):
            hit = node.entries.get(self._key(part))
            if hit is None:
                raise NotFoundError(op, path, f"{'/'.join(parts[: i + 1])!r} does not exist")
            node = self._nodes[hit[1]]
            if node.kind is not FileKind.DIR:
                sub = "/".join(parts[: i + 1])
                if node.kind is FileKind.SYMLINK:
                    raise SymlinkInPathError(op, path, f"{sub!r} is a symbolic link")
                raise NotADirError(op, path, f"{sub!r} is not a directory")
        return node

    def _parent(self, path: str, op: str) -> tuple[_Node, str]:
        self._alive()
        parts = split_path(path)
        if not parts:
            raise UnsafePathError(path, f"{op} needs a path below the root")
        return self._dir_node(parts[:-1], op, path), parts[-1]

    def _child(self, parent: _Node, name: str, op: str, path: str) -> _Node:
        hit = parent.entries.get(self._key(name))
        if hit is None:
            raise NotFoundError(op, path, "no such file or directory")
        return self._nodes[hit[1]]

    def _child_or_none(self, parent: _Node, name: str) -> _Node | None:
        hit = parent.entries.get(self._key(name))
        return None if hit is None else self._nodes[hit[1]]

    @staticmethod
    def _info(name: str, node: _Node) -> FileInfo:
        size = len(node.data) if node.kind is not FileKind.DIR else 0
        executable = node.kind is FileKind.FILE and node.executable
        info = node.info
        if (
            info is None
            or info.name != name
            or info.size != size
            or info.mtime_ns != node.mtime_ns
            or info.executable != executable
        ):
            info = node.info = FileInfo(
                name=name,
                kind=node.kind,
                size=size,
                mtime_ns=node.mtime_ns,
                inode=node.ino,
                executable=executable,
            )
        return info

    def _new_node(self, kind: FileKind, **fields: object) -> _Node:
        node = _Node(self._next_ino, kind, mtime_ns=self._now_ns(), **fields)  # type: ignore[arg-type]
        self._next_ino += 1
        self._nodes[node.ino] = node
        return node

    def _link(self, parent: _Node, name: str, node: _Node) -> None:
        parent.entries[self._key(name)] = (name, node.ino)
        parent.mtime_ns = self._now_ns()

    def _unlink(self, parent: _Node, name: str) -> None:
        del parent.entries[self._key(name)]
        parent.mtime_ns = self._now_ns()

    @staticmethod
    def _fsync_dir(node: _Node) -> None:
        node.durable_entries = dict(node.entries)

    @staticmethod
    def _fsync_file(node: _Node) -> None:
        node.durable_data = node.data
        node.durable_mtime_ns = node.mtime_ns
        node.durable_executable = node.executable

    # -- reading -----------------------------------------------------------------------------

    def lstat(self, path: str) -> FileInfo:
        self._alive()
        if split_path(path) == ():
            return self._info("", self._nodes[_ROOT_INO])
        parent, name = self._parent(path, "lstat")
        return self._info(name, self._child(parent, name, "lstat", path))

    def list_dir(self, path: str) -> list[FileInfo]:
        self._alive()
        node = self._dir_node(split_path(path), "list", path)
        return [self._info(name, self._nodes[ino]) for name, ino in node.entries.values()]

    def kinds_below(self, skip: Callable[[str, str], bool]) -> dict[str, FileKind]:
        """Every entry below the root by path, as walking it with ``list_dir`` finds them, in
        one go (a simulated user picks what to act on from this before every operation);
        ``skip(path, name)`` leaves an entry out, and everything below it."""
        self._alive()
        out: dict[str, FileKind] = {}
        todo = [("", self._nodes[_ROOT_INO])]
        while todo:
            folder, node = todo.pop()
            for name, ino in node.entries.values():
                path = f"{folder}/{name}" if folder else name
                if skip(path, name):
                    continue
                child = self._nodes[ino]
                out[path] = child.kind
                if child.kind is FileKind.DIR:
                    todo.append((path, child))
        return out

    def read_link(self, path: str) -> str:
        parent, name = self._parent(path, "readlink")
        node = self._child(parent, name, "readlink", path)
        if node.kind is not FileKind.SYMLINK:
            raise FsError("readlink", path, "not a symbolic link")
        return node.data.decode()

    def _file(self, path: str, op: str) -> _Node:
        parent, name = self._parent(path, op)
        node = self._child(parent, name, op, path)
        if node.kind is FileKind.DIR:
            raise IsADirError(op, path, "is a directory")
        if node.kind is FileKind.SYMLINK:
            raise SymlinkInPathError(op, path, "is a symbolic link")
        return node

    def open_read(self, path: str) -> BinaryIO:
        return io.BytesIO(self._file(path, "open").data)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("offset and length are non-negative")
        return self._file(path, "open").data[offset : offset + length]

    # -- writing -----------------------------------------------------------------------------

    def write_atomic(
        self,
        path: str,
        data: bytes | Iterable[bytes],
        *,
        mtime_ns: int | None = None,
        executable: bool = False,
        expect: Expectation = None,
    ) -> FileInfo:
        parent, name = self._parent(path, "write")
        payload = bytes(data) if isinstance(data, bytes | bytearray) else b"".join(data)
        tmp_name = temp_name(self._random.bytes(8))
        tmp = self._new_node(FileKind.FILE, data=payload, executable=executable)
        if mtime_ns is not None:
            tmp.mtime_ns = mtime_ns - mtime_ns % self._mtime_resolution_ns
        self._link(parent, tmp_name, tmp)
        self._point("write.before_fsync")
        self._fsync_file(tmp)
        self._point("write.before_rename")
        current = self._child_or_none(parent, name)
        try:
            if current is not None and current.kind is FileKind.DIR:
                raise IsADirError("write", path, "is a directory")
            if expect is MISSING and current is not None:
                raise ChangedUnderneathError("write", path, "an entry appeared at the destination")
            if isinstance(expect, FileInfo) and (
                current is None or not same_version(self._info(name, current), expect)
            ):
                raise ChangedUnderneathError("write", path, "the file changed since looked at")
        except FsError:
            self._unlink(parent, tmp_name)
            raise
        self._unlink(parent, tmp_name)
        if current is not None:
            self._unlink(parent, name)
        self._link(parent, name, tmp)
        self._point("write.before_dir_fsync")
        self._fsync_dir(parent)
        return self._info(name, tmp)

    def mkdir(self, path: str, *, parents: bool = False) -> None:
        self._alive()
        parts = split_path(path)
        if not parts:
            raise AlreadyExistsError("mkdir", path, "the root exists")
        node = self._nodes[_ROOT_INO]
        for i, part in enumerate(parts):
            sub = "/".join(parts[: i + 1])
            child = self._child_or_none(node, part)
            last = i == len(parts) - 1
            if child is None:
                if not (last or parents):
                    raise NotFoundError("mkdir", path, f"{sub!r} does not exist")
                child = self._new_node(FileKind.DIR)
                self._link(node, part, child)
                self._point("mkdir.before_dir_fsync")
                self._fsync_dir(node)
            elif last:
                raise AlreadyExistsError("mkdir", path, "exists")
            elif child.kind is FileKind.SYMLINK:
                raise SymlinkInPathError("mkdir", path, f"{sub!r} is a symbolic link")
            elif child.kind is not FileKind.DIR:
                raise NotADirError("mkdir", path, f"{sub!r} is not a directory")
            node = child

    def rename(self, src: str, dst: str, *, replace: bool = False) -> None:
        sparts, dparts = split_path(src), split_path(dst)
        if not sparts or not dparts:
            raise UnsafePathError(src if not sparts else dst, "cannot rename the root")
        sparent, sname = self._parent(src, "rename")
        node = self._child(sparent, sname, "rename", src)
        if src == dst:
            return
        if dparts[: len(sparts)] == sparts:
            raise FsError("rename", src, f"cannot move a directory into itself ({dst!r})")
        dparent, dname = self._parent(dst, "rename")
        target = self._child_or_none(dparent, dname)
        if target is not None and target.ino != node.ino:
            if not replace:
                raise AlreadyExistsError("rename", dst, "destination exists")
            # in the order Linux checks: onto its own ancestor, then kinds, then emptiness
            if sparts[: len(dparts)] == dparts:
                raise DirNotEmptyError("rename", dst, "directory not empty")
            if target.kind is FileKind.DIR and node.kind is not FileKind.DIR:
                raise IsADirError("rename", dst, "is a directory")
            if target.kind is not FileKind.DIR and node.kind is FileKind.DIR:
                raise NotADirError("rename", dst, "is not a directory")
            if target.kind is FileKind.DIR and target.entries:
                raise DirNotEmptyError("rename", dst, "directory not empty")
        if target is not None and target.ino == node.ino and dparent is sparent:
            # a case-only rename: go through a temp name, as on a real case-insensitive disk
            tmp = temp_name(self._random.bytes(8))
            self._unlink(sparent, sname)
            self._link(sparent, tmp, node)
            self._unlink(sparent, tmp)
            self._link(sparent, dname, node)
        else:
            if target is not None:
                self._unlink(dparent, dname)
            self._unlink(sparent, sname)
            self._link(dparent, dname, node)
        self._point("rename.before_dir_fsync")
        self._fsync_dir(dparent)
        self._fsync_dir(sparent)

    def trash(self, path: str, *, tag: str) -> str:
        return move_to_trash(self, path, tag)

    def remove_file(self, path: str) -> None:
        parent, name = self._parent(path, "remove")
        node = self._child(parent, name, "remove", path)
        if node.kind is FileKind.DIR:
            raise IsADirError("remove", path, "is a directory; use rmdir or trash")
        self._unlink(parent, name)

    def rmdir(self, path: str) -> None:
        parent, name = self._parent(path, "rmdir")
        node = self._child(parent, name, "rmdir", path)
        if node.kind is not FileKind.DIR:
            raise NotADirError("rmdir", path, "not a directory")
        if node.entries:
            raise DirNotEmptyError("rmdir", path, "directory not empty")
        self._unlink(parent, name)
        self._point("rmdir.before_dir_fsync")
        self._fsync_dir(parent)

    def symlink(self, path: str, target: str) -> None:
        if "\x00" in target:
            raise UnsafePathError(target, "symlink target contains NUL")
        parent, name = self._parent(path, "symlink")
        if self._child_or_none(parent, name) is not None:
            raise AlreadyExistsError("symlink", path, "exists")
        link = self._new_node(FileKind.SYMLINK, data=target.encode(), durable_data=target.encode())
        self._link(parent, name, link)

    def set_meta(
        self, path: str, *, mtime_ns: int | None = None, executable: bool | None = None
    ) -> None:
        parent, name = self._parent(path, "set_meta")
        node = self._child(parent, name, "set_meta", path)
        if mtime_ns is not None:
            node.mtime_ns = mtime_ns - mtime_ns % self._mtime_resolution_ns
        if executable is not None and node.kind is FileKind.FILE:
            node.executable = executable

    # -- for tests and simulations -----------------------------------------------------------

    def snapshot(self) -> dict[str, bytes | str | None]:
        """Every entry below the root: file bytes, symlink target (str), or None for a dir."""
        out: dict[str, bytes | str | None] = {}
        todo = [("", self._nodes[_ROOT_INO])]
        while todo:
            prefix, node = todo.pop()
            for name, ino in node.entries.values():
                child, path = self._nodes[ino], join(prefix, name)
                if child.kind is FileKind.DIR:
                    out[path] = None
                    todo.append((path, child))
                elif child.kind is FileKind.SYMLINK:
                    out[path] = child.data.decode()
                else:
                    out[path] = child.data
        return dict(sorted(out.items()))
