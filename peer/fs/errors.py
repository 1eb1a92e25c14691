"""Errors of the device's local layer: one base, ``LocalError``, for the folder and its index.

Every failure carries the relative path and the operation, so it can become a per-file error row
(``FileError``) that ``drift status`` lists, rather than a traceback.
"""

from __future__ import annotations


class LocalError(Exception):
    """Base of every error raised by ``peer.fs`` and ``peer.local``."""


class UnsafePathError(LocalError, ValueError):
    """A path that could escape the synced folder or cannot name a file: refused before any I/O."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"unsafe path {path!r}: {reason}")
        self.path = path
        self.reason = reason


class FsError(LocalError):
    """An operation on the synced folder failed; ``path`` is relative to the folder's root."""

    def __init__(self, op: str, path: str, reason: str) -> None:
        super().__init__(f"{op} {path!r}: {reason}")
        self.op = op
        self.path = path
        self.reason = reason


class NotFoundError(FsError):
    pass


class AlreadyExistsError(FsError):
    pass


class NotADirError(FsError):
    """A component of the path, or the path itself where a directory was needed, is not one."""


class IsADirError(FsError):
    pass


class DirNotEmptyError(FsError):
    pass


class SymlinkInPathError(FsError):
    """A parent of the path is a symbolic link: we never follow one, in or out of the folder."""


class AccessDeniedError(FsError):
    pass


class ChangedUnderneathError(FsError):
    """The file changed since the caller last looked; the write was not applied, nothing lost."""


class NoSpaceError(FsError):
    pass


class SimulatedCrash(BaseException):
    """A MemFileSystem crash point fired. A BaseException so no ``except Exception`` survives it:
    the simulated process is dead; call ``MemFileSystem.crash()`` for the state a reboot sees."""
