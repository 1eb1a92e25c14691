"""Change events: what a peer applies to disk after the visible tree changed."""

from __future__ import annotations

from dataclasses import dataclass

from crdt.view import Entry, EntryKind, FileVersion, VisibleTree


@dataclass(frozen=True, slots=True)
class Appeared:
    path: str
    kind: EntryKind
    entry_id: str
    version: FileVersion | None


@dataclass(frozen=True, slots=True)
class Moved:
    old_path: str
    path: str
    kind: EntryKind
    entry_id: str


@dataclass(frozen=True, slots=True)
class Renamed:
    old_path: str
    path: str
    kind: EntryKind
    entry_id: str


@dataclass(frozen=True, slots=True)
class ContentChanged:
    path: str
    entry_id: str
    old_version: FileVersion | None
    version: FileVersion | None


@dataclass(frozen=True, slots=True)
class Disappeared:
    path: str
    kind: EntryKind
    entry_id: str


ChangeEvent = Appeared | Moved | Renamed | ContentChanged | Disappeared


def _depth(path: str) -> int:
    return path.count("/")


def events_from_journal(tree: VisibleTree, journal: dict[str, Entry | None]) -> list[ChangeEvent]:
    """Turn the old values of changed entries into events, in an order safe to apply on disk.

    Disappearances come first (deepest first), then moves and renames (shallowest first), then
    appearances (shallowest first), then content changes. Apply them in the two phases that
    docs/crdt.md describes. An entry that changed identity (same-name folders merged or split)
    disappears and appears again, possibly at the same path.
    """
    gone: list[Disappeared] = []
    came: list[Appeared] = []
    moves: list[ChangeEvent] = []
    content: list[ChangeEvent] = []
    for eid, old in journal.items():
        new = tree.entries.get(eid)
        if new is None:
            if old is not None:
                gone.append(Disappeared(tree.path_of(eid, journal), old.kind, eid))
        elif old is None:
            came.append(Appeared(tree.path_of(eid), new.kind, eid, new.version))
        else:
            old_path = tree.path_of(eid, journal)
            path = tree.path_of(eid)
            if old.parent != new.parent:
                moves.append(Moved(old_path, path, new.kind, eid))
            elif old.name != new.name:
                moves.append(Renamed(old_path, path, new.kind, eid))
            if old.version != new.version:
                content.append(ContentChanged(path, eid, old.version, new.version))
    out: list[ChangeEvent] = sorted(gone, key=lambda e: (-_depth(e.path), e.path))
    out.extend(sorted(moves, key=lambda e: (_depth(e.path), e.path)))  # type: ignore[union-attr]
    out.extend(sorted(came, key=lambda e: (_depth(e.path), e.path)))
    out.extend(sorted(content, key=lambda e: e.path))  # type: ignore[union-attr]
    return out


def diff_trees(old: VisibleTree, new: VisibleTree) -> list[ChangeEvent]:
    """Events taking ``old`` to ``new`` (for two independent trees, e.g. a restore preview)."""
    journal: dict[str, Entry | None] = {}
    merged = VisibleTree()
    merged.entries = dict(new.entries)
    merged.kids = new.kids
    for eid, e in old.entries.items():
        if new.entries.get(eid) != e:
            journal[eid] = e
    for eid in new.entries:
        if eid not in old.entries:
            journal[eid] = None
    return events_from_journal(merged, journal)
