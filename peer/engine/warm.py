"""Warm start: a share's folder tree saved beside its state, so a restart skips the replay.

Without it, opening a share replays every stored CRDT update into a fresh tree (minutes for a
share with a long history). With it, the tree is loaded as ``crdt.persist`` saved it, projection
included, and only the updates stored since are applied.

The file ``tree.snapshot`` (next to the share's ``state.db``) is ``MAGIC ‖ covered (u64 BE) ‖
tree``: ``covered`` is the store position (``updates.ord``) of the last update the saved tree
may hold, and ``tree`` is ``crdt.persist.save`` output with its own checksum. The store stays the
source of truth, so a saved tree is used only if it matches the store exactly: the updates stored
up to ``covered`` are precisely those the tree holds (applied or waiting for their causal past),
and none stored after ``covered`` is one of them. A missing, damaged or foreign file (another
install of the device: a restored backup), or a tree holding an update the store has since dropped
(a fork), falls back to the replay, which is always right. A crash after a save loses nothing: the
updates stored after it are applied on top.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Iterable
from pathlib import Path

from crdt.errors import CorruptState
from crdt.identity import ReplicaIdentity, replica_for
from crdt.persist import load, save
from crdt.tree import FolderTree

logger = logging.getLogger("peer.engine")

MAGIC = b"DRIFTWARM1"
_COVERED = struct.Struct(">Q")
SNAPSHOT_NAME = "tree.snapshot"
SAVE_EVERY_UPDATES = 256
"""Updates stored since the last save that make a pass end with a save (and on every close)."""

StoredKey = tuple[int, bytes, bytes, int]  # ord, device, install, seq: ShareStore.update_keys()


def snapshot_path(state_db: Path) -> Path:
    return state_db.parent / SNAPSHOT_NAME


def write_snapshot(path: Path, tree: FolderTree, covered: int) -> int:
    """Save ``tree`` atomically (temp file, fsync, rename, fsync of the folder); its size."""
    data = MAGIC + _COVERED.pack(covered) + save(tree)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return len(data)


def read_snapshot(path: Path, identity: ReplicaIdentity) -> tuple[FolderTree, int] | None:
    """The saved tree and the store position it covers; None (and why, in the log) if unusable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("saved folder tree %s cannot be read (%s); replaying updates", path, exc)
        return None
    head = len(MAGIC) + _COVERED.size
    if len(data) < head or not data.startswith(MAGIC):
        logger.warning("saved folder tree %s is not one; replaying updates", path)
        return None
    (covered,) = _COVERED.unpack_from(data, len(MAGIC))
    try:
        tree = load(identity, data[head:])
    except CorruptState as exc:
        logger.warning("saved folder tree %s is unusable (%s); replaying updates", path, exc)
        return None
    return tree, covered


def stale_reason(tree: FolderTree, keys: Iterable[StoredKey], covered: int) -> str | None:
    """Why ``tree`` (saved at ``covered``) does not match the stored updates; None if it does."""
    have = tree.log.vector()  # replica → n: the tree applied that replica's updates 1..n
    waiting = {(p.identity.replica, p.seq) for p in tree.held}
    stored_up_to: set[tuple[str, int]] = set()
    for ord_, device, install, seq in keys:
        key = (replica_for(device, install), seq)
        known = seq <= have.get(key[0], 0) or key in waiting
        if ord_ <= covered:
            if not known:
                return f"update {key[0]}#{seq} is stored but not in the saved tree"
            stored_up_to.add(key)
        elif known:
            return f"update {key[0]}#{seq} was stored again after the save"
    if len(stored_up_to) != sum(have.values()) + len(waiting):
        return "the saved tree holds updates the store no longer has"
    return None
