"""The local trash, written once over any FileSystem: deleting moves an entry, never unlinks it."""

from __future__ import annotations

from peer.fs.base import TRASH_DIR, FileSystem
from peer.fs.errors import NotFoundError, UnsafePathError
from peer.fs.paths import parent_of, split_path


def exists(fs: FileSystem, path: str) -> bool:
    try:
        fs.lstat(path)
    except NotFoundError:
        return False
    return True


def move_to_trash(fs: FileSystem, path: str, tag: str) -> str:
    """Move ``path`` to ``.drift/trash/<tag>/<path>`` (suffixed ``.1``, ``.2``… if taken)."""
    if not tag or "/" in tag or tag in (".", "..") or "\x00" in tag:
        raise UnsafePathError(tag, "a trash tag is one path component")
    if split_path(path)[:2] == tuple(TRASH_DIR.split("/")):
        raise UnsafePathError(path, "already in the trash")
    fs.lstat(path)
    dest = f"{TRASH_DIR}/{tag}/{path}"
    candidate, n = dest, 0
    while exists(fs, candidate):
        n += 1
        candidate = f"{dest}.{n}"
    parent = parent_of(candidate)
    if not exists(fs, parent):
        fs.mkdir(parent, parents=True)
    fs.rename(path, candidate)
    return candidate
