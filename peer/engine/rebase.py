"""The local index after envelopes were taken back (:mod:`peer.engine.retract`).

The index's base says what each path was last synced as; after a retraction some bases name
entries or versions the rebuilt tree no longer holds. What happens to each path depends on who
made the change that went:

- another device's (the removed member's) create or version: the row stays as it is, so the
  pass's tree → disk step treats it as a change from the share: the file goes to the trash, or
  back to its last valid version, unless it changed here since (then it is published again as
  this device's own: an edit here is never lost);
- ours (a create, an edit, a move): the disk holds what the user did, so it becomes a local change
  on top of the valid state and is published again — a file we created is new again, an edit of
  a file that still exists is an edit of its current version (not a conflicted copy), a move is
  a move from where the entry now is. An edit of a file only the removed member had made is new.

Our own deletions come back from the tree, as after a fork (``ShareSync._recover_from_fork``):
their rows were forgotten when they were published, so nothing says the disk lacks them on
purpose. Nothing is lost, but the user's intent there is undone.
"""

from __future__ import annotations

import dataclasses

from crdt.tree import FolderTree
from peer.device.store import ShareStore, SyncedFile
from peer.local.index import SyncState


def rebase_rows(store: ShareStore, old: FolderTree, new: FolderTree, own: str) -> int:
    """Make our changes that ``new`` lacks and ``old`` held local changes again, as the module
    docs say; ``own`` is this replica's op-id prefix. How many rows changed."""
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
                changed += _edit_again(store, b, new)
            continue
        entry = new.entry(b.entry)
        if entry is None or node not in own_moved:
            continue
        path = new.path_of(entry.id)
        if path != b.path:
            store.put_file(dataclasses.replace(b, path=path, state=_changed(b.state)))
            changed += 1
    return changed


def _edit_again(store: ShareStore, b: SyncedFile, new: FolderTree) -> int:
    """Our version of a file that is still there went: the disk holds an edit of its current
    version."""
    entry = new.entry(b.entry)
    if entry is None or entry.version is None:
        store.forget_file(b.path)
        return 1
    store.put_file(
        dataclasses.replace(
            b,
            path=new.path_of(entry.id),
            version=entry.version.version_id,
            content=entry.version.manifest,
            state=_changed(b.state),
        )
    )
    return 1


def _changed(state: SyncState) -> SyncState:
    return SyncState.MODIFIED if state is SyncState.SYNCED else state
