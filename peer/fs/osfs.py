"""``OsFileSystem``: the synced folder on the real disk, never leaving it.

Every operation walks from the root with ``openat``-style calls (``dir_fd`` and ``O_NOFOLLOW``), so
a symlinked directory inside the folder, or one swapped in mid-operation, can never redirect a read
or a write outside it. Writes are durable: temp file, fsync, rename, fsync of the directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from peer.fs.base import (
    MISSING,
    Expectation,
    FileInfo,
    FileKind,
    same_version,
)
from peer.fs.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    ChangedUnderneathError,
    DirNotEmptyError,
    FsError,
    IsADirError,
    LocalError,
    NoSpaceError,
    NotADirError,
    NotFoundError,
    SymlinkInPathError,
    UnsafePathError,
)
from peer.fs.paths import join, name_key, name_of, parent_of, split_path, temp_name
from peer.fs.trash import move_to_trash
from seams import OsRandom, RandomSource

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO someone left in the folder must not hang the scanner.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

DEFAULT_OS_MTIME_RESOLUTION_NS = 20_000_000
"""ext4 stores nanoseconds, but the kernel stamps mtimes from a coarse clock (a jiffy, up to
10 ms): two writes that close together can share an mtime. FAT users pass 2 s."""

_ERRNO_ERRORS: dict[int, type[FsError]] = {
    errno.ENOENT: NotFoundError,
    errno.EEXIST: AlreadyExistsError,
    errno.ENOTDIR: NotADirError,
    errno.EISDIR: IsADirError,
    errno.ENOTEMPTY: DirNotEmptyError,
    errno.EACCES: AccessDeniedError,
    errno.EPERM: AccessDeniedError,
    errno.ENOSPC: NoSpaceError,
    errno.EDQUOT: NoSpaceError,
    errno.ELOOP: SymlinkInPathError,
}


def _error(op: str, path: str, exc: OSError) -> FsError:
    cls = _ERRNO_ERRORS.get(exc.errno or 0, FsError)
    return cls(op, path, exc.strerror or str(exc))


def _kind(mode: int) -> FileKind:
    if stat.S_ISREG(mode):
        return FileKind.FILE
    if stat.S_ISDIR(mode):
        return FileKind.DIR
    if stat.S_ISLNK(mode):
        return FileKind.SYMLINK
    return FileKind.OTHER


def _info(name: str, st: os.stat_result) -> FileInfo:
    kind = _kind(st.st_mode)
    return FileInfo(
        name=name,
        kind=kind,
        size=st.st_size if kind is not FileKind.DIR else 0,
        mtime_ns=st.st_mtime_ns,
        inode=st.st_ino,
        executable=kind is FileKind.FILE and bool(st.st_mode & stat.S_IXUSR),
    )


def _exec_mode(mode: int, executable: bool) -> int:
    """Like git: executable means x wherever r is; not executable clears every x bit."""
    perm = stat.S_IMODE(mode)
    return perm | ((perm & 0o444) >> 2) if executable else perm & ~0o111


class OsFileSystem:
    """The folder at ``root`` on the OS (POSIX with ``dir_fd`` support: Linux, macOS, BSD)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        random: RandomSource | None = None,
        mtime_resolution_ns: int = DEFAULT_OS_MTIME_RESOLUTION_NS,
        case_insensitive: bool | None = None,
    ) -> None:
        if os.open not in os.supports_dir_fd or os.scandir not in os.supports_fd:
            raise LocalError("this platform lacks openat/dir_fd support needed by OsFileSystem")
        self.root = os.path.realpath(os.fspath(root))
        if not os.path.isdir(self.root):
            raise NotFoundError("open folder", self.root, "not a directory")
        self._random = random or OsRandom()
        self._mtime_resolution_ns = mtime_resolution_ns
        self._case_insensitive = case_insensitive

    def __repr__(self) -> str:
        return f"OsFileSystem({self.root!r})"

    # -- properties -------------------------------------------------------------------------

    @property
    def case_insensitive(self) -> bool:
        if self._case_insensitive is None:
            self._case_insensitive = self._probe_case_insensitive()
        return self._case_insensitive

    @property
    def mtime_resolution_ns(self) -> int:
        return self._mtime_resolution_ns

    def _probe_case_insensitive(self) -> bool:
        name = temp_name(self._random.bytes(8))
        with self._dir(()) as dfd:
            fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=dfd)
            os.close(fd)
            try:
                os.stat(name.upper(), dir_fd=dfd, follow_symlinks=False)
                return True
            except FileNotFoundError:
                return False
            finally:
                os.unlink(name, dir_fd=dfd)

    # -- walking from the root without following links ---------------------------------------

    @contextlib.contextmanager
    def _dir(self, parts: tuple[str, ...], op: str = "open", path: str = "") -> Iterator[int]:
        try:
            fd = os.open(self.root, _DIR_FLAGS & ~os.O_NOFOLLOW)
        except OSError as exc:  # the folder itself is gone (an unmounted disk?): say so
            raise _error(op, path, exc) from exc
        try:
            for i, part in enumerate(parts):
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    sub = "/".join(parts[: i + 1])
                    raise self._component_error(op, path, sub, fd, exc) from exc
                os.close(fd)
                fd = nfd
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def _component_error(op: str, path: str, sub: str, dfd: int, exc: OSError) -> FsError:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            with contextlib.suppress(OSError):
                st = os.stat(name_of(sub), dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    return SymlinkInPathError(op, path, f"{sub!r} is a symbolic link")
            return NotADirError(op, path, f"{sub!r} is not a directory")
        return _error(op, path, exc)

    @contextlib.contextmanager
    def _parent(self, path: str, op: str) -> Iterator[tuple[int, str]]:
        parts = split_path(path)
        if not parts:
            raise UnsafePathError(path, f"{op} needs a path below the root")
        with self._dir(parts[:-1], op, path) as dfd:
            try:
                yield dfd, parts[-1]
            except OSError as exc:
                raise _error(op, path, exc) from exc

    # -- reading -----------------------------------------------------------------------------

    def lstat(self, path: str) -> FileInfo:
        parts = split_path(path)
        if not parts:
            with self._dir(()) as dfd:
                return _info("", os.fstat(dfd))
        with self._parent(path, "lstat") as (dfd, name):
            return _info(name, os.stat(name, dir_fd=dfd, follow_symlinks=False))

    def list_dir(self, path: str) -> list[FileInfo]:
        parts = split_path(path)
        out: list[FileInfo] = []
        with self._dir(parts, "list", path) as dfd:
            try:
                # scandir closes the fd it is given, so give it its own copy.
                with os.scandir(os.dup(dfd)) as entries:
                    for entry in entries:
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue  # removed between readdir and stat: it is not there
                        out.append(_info(entry.name, st))
            except OSError as exc:
                raise _error("list", path, exc) from exc
        return out

    def read_link(self, path: str) -> str:
        with self._parent(path, "readlink") as (dfd, name):
            return os.readlink(name, dir_fd=dfd)

    def _open_fd(self, path: str) -> int:
        with self._parent(path, "open") as (dfd, name):
            fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            cls = IsADirError if stat.S_ISDIR(st.st_mode) else FsError
            raise cls("open", path, "not a regular file")
        os.set_blocking(fd, True)
        return fd

    def open_read(self, path: str) -> BinaryIO:
        return os.fdopen(self._open_fd(path), "rb")

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("offset and length are non-negative")
        fd = self._open_fd(path)
        try:
            parts: list[bytes] = []
            while length > 0:
                block = os.pread(fd, length, offset)
                if not block:
                    break
                parts.append(block)
                offset += len(block)
                length -= len(block)
            return b"".join(parts)
        except OSError as exc:
            raise _error("read", path, exc) from exc
        finally:
            os.close(fd)

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
        chunks: Iterable[bytes] = (data,) if isinstance(data, bytes | bytearray) else data
        with self._parent(path, "write") as (dfd, name):
            tmp = temp_name(self._random.bytes(8))
            fd = os.open(tmp, _CREATE_FLAGS, 0o777 if executable else 0o666, dir_fd=dfd)
            renamed = False
            try:
                try:
                    for chunk in chunks:
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view) :]
                    if mtime_ns is not None:
                        os.utime(fd, ns=(mtime_ns, mtime_ns))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._check_expect(dfd, name, path, expect)
                os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                renamed = True
                os.fsync(dfd)
                return _info(name, os.stat(name, dir_fd=dfd, follow_symlinks=False))
            finally:
                if not renamed:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=dfd)

    @staticmethod
    def _check_expect(dfd: int, name: str, path: str, expect: Expectation) -> None:
        if expect is None:
            return
        try:
            current: FileInfo | None = _info(name, os.stat(name, dir_fd=dfd, follow_symlinks=False))
        except FileNotFoundError:
            current = None
        if expect is MISSING:
            if current is not None:
                raise ChangedUnderneathError("write", path, "an entry appeared at the destination")
        elif current is None or not same_version(current, expect):
            raise ChangedUnderneathError("write", path, "the file changed since looked at")

    def mkdir(self, path: str, *, parents: bool = False) -> None:
        parts = split_path(path)
        if not parts:
            raise AlreadyExistsError("mkdir", path, "the root exists")
        start = len(parts) - 1
        if parents:
            start = 0
            for i in range(len(parts) - 1):
                try:
                    info = self.lstat("/".join(parts[: i + 1]))
                except NotFoundError:
                    break
                if info.kind is not FileKind.DIR:
                    sub = "/".join(parts[: i + 1])
                    cls = SymlinkInPathError if info.kind is FileKind.SYMLINK else NotADirError
                    raise cls("mkdir", path, f"{sub!r} is a {info.kind}")
                start = i + 1
        for i in range(max(start, 0), len(parts)):
            sub = "/".join(parts[: i + 1])
            with self._parent(sub, "mkdir") as (dfd, name):
                os.mkdir(name, dir_fd=dfd)
                os.fsync(dfd)

    def rename(self, src: str, dst: str, *, replace: bool = False) -> None:
        sparts, dparts = split_path(src), split_path(dst)
        if not sparts or not dparts:
            raise UnsafePathError(src if not sparts else dst, "cannot rename the root")
        source = self.lstat(src)
        if src == dst:
            return
        if dparts[: len(sparts)] == sparts:
            raise FsError("rename", src, f"cannot move a directory into itself ({dst!r})")
        try:
            target: FileInfo | None = self.lstat(dst)
        except NotFoundError:
            target = None
        if target is not None:
            same_entry = target.inode == source.inode and name_key(src, True) == name_key(dst, True)
            if same_entry:
                self._case_only_rename(src, dst)
                return
            if not replace:
                raise AlreadyExistsError("rename", dst, "destination exists")
        with (
            self._parent(src, "rename") as (sfd, sname),
            self._parent(dst, "rename") as (dfd, dname),
        ):
            os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
            os.fsync(dfd)
            if parent_of(src) != parent_of(dst):
                os.fsync(sfd)

    def _case_only_rename(self, src: str, dst: str) -> None:
        """``a`` → ``A`` where both name one entry: some filesystems ignore a direct rename."""
        tmp = join(parent_of(src), temp_name(self._random.bytes(8)))
        self.rename(src, tmp)
        self.rename(tmp, dst)

    def trash(self, path: str, *, tag: str) -> str:
        return move_to_trash(self, path, tag)

    def remove_file(self, path: str) -> None:
        with self._parent(path, "remove") as (dfd, name):
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirError("remove", path, "is a directory; use rmdir or trash")
            os.unlink(name, dir_fd=dfd)

    def rmdir(self, path: str) -> None:
        with self._parent(path, "rmdir") as (dfd, name):
            os.rmdir(name, dir_fd=dfd)
            os.fsync(dfd)

    def symlink(self, path: str, target: str) -> None:
        if "\x00" in target:
            raise UnsafePathError(target, "symlink target contains NUL")
        with self._parent(path, "symlink") as (dfd, name):
            os.symlink(target, name, dir_fd=dfd)

    def set_meta(
        self, path: str, *, mtime_ns: int | None = None, executable: bool | None = None
    ) -> None:
        with self._parent(path, "set_meta") as (dfd, name):
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                if mtime_ns is not None:
                    os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=dfd, follow_symlinks=False)
                return
            fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
            try:
                if executable is not None and stat.S_ISREG(st.st_mode):
                    os.fchmod(fd, _exec_mode(st.st_mode, executable))
                if mtime_ns is not None:
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)
