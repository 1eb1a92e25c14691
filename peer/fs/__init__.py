"""The FileSystem seam for a synced folder: ``OsFileSystem`` (disk), ``MemFileSystem`` (RAM)."""

from peer.fs.base import MISSING, TRASH_DIR, FileInfo, FileKind, FileSystem, same_version
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
    SimulatedCrash,
    SymlinkInPathError,
    UnsafePathError,
)
from peer.fs.memfs import CRASH_POINTS, MemFileSystem
from peer.fs.osfs import OsFileSystem
from peer.fs.paths import is_temp_name, name_key, split_path

__all__ = [
    "CRASH_POINTS",
    "MISSING",
    "TRASH_DIR",
    "AccessDeniedError",
    "AlreadyExistsError",
    "ChangedUnderneathError",
    "DirNotEmptyError",
    "FileInfo",
    "FileKind",
    "FileSystem",
    "FsError",
    "IsADirError",
    "LocalError",
    "MemFileSystem",
    "NoSpaceError",
    "NotADirError",
    "NotFoundError",
    "OsFileSystem",
    "SimulatedCrash",
    "SymlinkInPathError",
    "UnsafePathError",
    "is_temp_name",
    "name_key",
    "same_version",
    "split_path",
]
