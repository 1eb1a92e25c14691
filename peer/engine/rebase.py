"""The local index after envelopes were taken back (:mod:`peer.engine.retract`).

The index's base says what each path was last synced as; after a retraction some bases name
entries or versions the rebuilt tree no longer holds. What happens to each path depends on who
made the change that went:

- another device's (the removed member's) create or version: the row stays as it is, so the
  pass's tree → disk step treats it as a change from the share: the file goes to the trash, or
  back to its last valid version, unless it changed here since (then it is published again as
  this device's own: an edit here is never lost);
- ours (a create, an edit, a move, a deletion): the disk holds what the user did, so it becomes
  a local change on top of the valid state and is published again — a file we created is new
  again; an edit of a file that still exists is an edit of the last valid version it came from
  (so an edit made elsewhere meanwhile makes ours a conflicted copy, as it would have); an edit
  of a file only the removed member had made is new; a move is a move from where the entry now
  is; a deletion is a deletion again (its row was forgotten when it was published: a row marked
  deleted stands in for it), unless the share holds a version the deletion had not seen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from crdt.ops import TRASH, MoveOp, VersionOp
from crdt.tree import FolderTree
from peer.device.store import ShareStore, SyncedFile
from peer.local.index import SyncState


def rebase_rows(
    store: ShareStore,
    old: FolderTree,
    new: FolderTree,
    own: str,
    disk_path: Callable[[str], str],
) -> int:
    """Make our changes that ``new`` lacks and ``old`` held local changes again, as the module
    docs say; ``own`` is this replica's op-id prefix, ``disk_path`` maps a tree path to the
    disk. How many rows changed."""
    gone_moves = [op for oid, op in old.index.moves.items() if oid not in new.index.moves]
    gone_versions = {
        oid: op for oid, op in old.index.versions.items() if oid not in new.index.versions
    }
    if not gone_moves and not gone_versions:
        return 0
    own_created = {op.node for op in gone_moves if op.replica == own and op.node == op.id}
    own_moved = {op.node for op in gone_moves if op.replica == own}
    own_edited = {op.node for op in gone_versions.values() if op.replica == own}
    changed = 0
    for b in store.files().values():
        node = b.entry.partition("~")[0]
        if node not in new.index.creates:
            if node in own_created or node in own_edited:
                store.forget_file(b.path)  # ours, or another's we edited: new here again
                changed += 1
            continue
        gone = gone_versions.get(b.version) if b.version is not None else None
        if gone is not None:
            if gone.replica == own:
                changed += _edit_again(store, b, new, _valid_base(gone, old, new))
            continue
        entry = new.entry(b.entry)
        if entry is None or node not in own_moved:
            continue
        path = new.path_of(entry.id)
        if path != b.path:
            store.put_file(dataclasses.replace(b, path=path, state=_changed(b.state)))
            changed += 1
    deletes = [op for op in gone_moves if op.replica == own and op.parent == TRASH]
    return changed + _delete_again(store, new, deletes, disk_path)


def _delete_again(
    store: ShareStore, new: FolderTree, deletes: list[MoveOp], disk_path: Callable[[str], str]
) -> int:
    """Rows marked deleted for what our taken-back deletions removed and the tree shows again
    (a recursive deletion is one per node). Not where the disk holds something (a row), nor for
    a version the deletion had not seen: an edit made meanwhile beats it, as it always does."""
    synced = {b.entry for b in store.files().values()}
    added = 0
    for op in deletes:
        entry_id = new.view.node_entry.get(op.node)
        entry = None if entry_id is None else new.entry(entry_id)
        if entry is None or entry.id in synced:
            continue
        v = entry.version
        if v is not None and v.version_id not in op.seen:
            continue
        synced.add(entry.id)
        path = new.path_of(entry.id)
        store.put_file(
            SyncedFile(
                path,
                disk_path(path),
                entry.id,
                "dir" if entry.is_dir else "file",
                0 if v is None else v.size,
                0 if v is None else v.mtime_ms * 1_000_000,
                0,
                v is not None and v.executable,
                None if v is None else v.manifest,
                None if v is None else v.version_id,
                state=SyncState.DELETED,
            )
        )
        added += 1
    return added


def _valid_base(version: VersionOp, old: FolderTree, new: FolderTree) -> VersionOp | None:
    """The latest version ``version`` came from that ``new`` still holds."""
    found: list[VersionOp] = []
    frontier = list(version.base)
    looked: set[str] = set()
    while frontier:
        vid = frontier.pop()
        if vid in looked:
            continue
        looked.add(vid)
        if (kept := new.index.versions.get(vid)) is not None:
            found.append(kept)
        elif (went := old.index.versions.get(vid)) is not None:
            frontier.extend(went.base)
    return max(found, key=lambda v: v.key, default=None)


def _edit_again(store: ShareStore, b: SyncedFile, new: FolderTree, base: VersionOp | None) -> int:
    """Our version of a file that is still there went: the disk holds an edit of ``base``."""
    entry = new.entry(b.entry)
    if entry is None or base is None:
        store.forget_file(b.path)
        return 1
    store.put_file(
        dataclasses.replace(
            b,
            path=new.path_of(entry.id),
            version=base.version_id,
            content=base.manifest,
            state=_changed(b.state),
        )
    )
    return 1


def _changed(state: SyncState) -> SyncState:
    return SyncState.MODIFIED if state is SyncState.SYNCED else state
