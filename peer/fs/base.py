"""The FileSystem seam: the narrow set of operations the peer needs on its synced folder.

The methods block; async code calls them through its ``seams.Executor``. Every path is relative to
the folder's root and validated (``peer.fs.paths``). Symbolic links are reported, never followed:
an operation whose path passes through a symlinked directory fails with ``SymlinkInPathError``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO, Final, Protocol


class FileKind(enum.StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    OTHER = "other"  # fifos, sockets, devices: never synced


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What one ``lstat`` says about an entry (of a symlink itself, never its target)."""

    name: str
    kind: FileKind
    size: int
    mtime_ns: int
    inode: int
    executable: bool = False


class _Missing(enum.Enum):
    MISSING = "missing"


MISSING: Final = _Missing.MISSING
"""For ``write_atomic(expect=MISSING)``: the destination must not exist."""

Expectation = FileInfo | _Missing | None


def same_version(a: FileInfo, b: FileInfo) -> bool:
    """Same kind, size, mtime and inode: nothing observable changed between two looks."""
    return (a.kind, a.size, a.mtime_ns, a.inode) == (b.kind, b.size, b.mtime_ns, b.inode)


class FileSystem(Protocol):
    @property
    def case_insensitive(self) -> bool:
        """Whether ``a`` and ``A`` name the same entry in this folder."""
        ...

    @property
    def mtime_resolution_ns(self) -> int:
        """How coarse stored mtimes are (1 on ext4, 2 s on FAT); racy-change checks use it."""
        ...

    def lstat(self, path: str) -> FileInfo: ...

    def list_dir(self, path: str) -> list[FileInfo]:
        """The entries of a directory, one ``lstat`` each, in no particular order."""
        ...

    def read_link(self, path: str) -> str: ...

    def open_read(self, path: str) -> BinaryIO:
        """A binary stream for reading; the caller closes it."""
        ...

    def read_range(self, path: str, offset: int, length: int) -> bytes: ...

    def write_atomic(
        self,
        path: str,
        data: bytes | Iterable[bytes],
        *,
        mtime_ns: int | None = None,
        executable: bool = False,
        expect: Expectation = None,
    ) -> FileInfo:
        """Temp file in the same directory, write, fsync, rename over ``path``, fsync the directory.

        ``expect`` guards the replace: ``MISSING`` (nothing may be there), a ``FileInfo`` (the entry
        must still look like that) or ``None`` (replace whatever is there). A failed guard raises
        ``ChangedUnderneathError`` and leaves the existing entry as it was.
        """
        ...

    def mkdir(self, path: str, *, parents: bool = False) -> None: ...

    def rename(self, src: str, dst: str, *, replace: bool = False) -> None:
        """Move ``src`` to ``dst`` durably; a case-only rename goes through a temp name."""
        ...

    def trash(self, path: str, *, tag: str) -> str:
        """Move an entry into the local trash (``.drift/trash/<tag>/<path>``); returns where."""
        ...

    def remove_file(self, path: str) -> None:
        """Delete a file or symlink outright (our temp files; user data goes to ``trash``)."""
        ...

    def rmdir(self, path: str) -> None:
        """Remove an empty directory."""
        ...

    def symlink(self, path: str, target: str) -> None: ...

    def set_meta(
        self, path: str, *, mtime_ns: int | None = None, executable: bool | None = None
    ) -> None: ...


TRASH_DIR = ".drift/trash"
"""Where ``trash`` puts things, relative to the root; ``.drift`` is always ignored."""

READ_BLOCK = 1 << 20
