"""Rules 4–5 of the projection: what a folder lists, given the structure.

A visible entry is a folder (possibly several same-name folder nodes merged), a file (possibly
several same-name, same-content file nodes shown once) or a conflicted copy (a losing version head
of a file). The tree is kept per folder, so a change re-presents only the folders it touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from crdt.index import OpIndex
from crdt.names import conflicted_copy_name, name_conflict_name, name_key
from crdt.ops import ROOT, VersionOp
from crdt.rules import ProjectionRules
from crdt.structure import Structure

ROOT_ENTRY = ROOT


class EntryKind(StrEnum):
    DIR = "dir"
    FILE = "file"
    CONFLICTED_COPY = "conflicted_copy"


@dataclass(frozen=True, slots=True)
class FileVersion:
    """One version of a file: its manifest (or single block) id, size, mtime and author."""

    version_id: str
    manifest: bytes
    size: int
    mtime_ms: int
    author: str

    @classmethod
    def of(cls, op: VersionOp) -> FileVersion:
        return cls(op.id, op.manifest, op.size, op.mtime_ms, op.replica)


@dataclass(frozen=True, slots=True)
class Entry:
    """A visible entry. ``id`` is its primary node (for copies ``node~version``)."""

    id: str
    kind: EntryKind
    parent: str
    name: str
    nodes: tuple[str, ...]
    version: FileVersion | None = None
    copies: tuple[str, ...] = ()  # entry ids of this file's conflicted copies
    copy_of: str | None = None  # for a conflicted copy: the file entry it belongs to

    @property
    def is_dir(self) -> bool:
        return self.kind is EntryKind.DIR


def winner_and_copies(index: OpIndex, nodes: tuple[str, ...],
                      rules: ProjectionRules) -> tuple[VersionOp | None, list[VersionOp]]:
    """Rule 4: the max head wins; other heads with other content become conflicted copies."""
    heads = [index.versions[h] for n in nodes for h in index.version_heads(n)]
    if not heads:
        return None, []
    heads.sort(key=lambda v: v.key)
    winner = heads[-1]
    if not rules.conflicted_copies:
        return winner, []
    shown = {winner.manifest}
    copies = []
    for head in heads[:-1]:
        if head.manifest not in shown:
            shown.add(head.manifest)
            copies.append(head)
    return winner, copies


def _primary_winner(index: OpIndex, node: str) -> VersionOp | None:
    heads = index.version_heads(node)
    return max((index.versions[h] for h in heads), key=lambda v: v.key, default=None)


def present_folder(eid: str, folder_nodes: tuple[str, ...], structure: Structure,
                   index: OpIndex, rules: ProjectionRules) -> list[Entry]:
    """Rule 5 on the union of the children of ``folder_nodes``; deterministic for every replica."""
    kids = [c for n in folder_nodes for c in structure.children.get(n, ())]
    kids.sort(key=lambda c: index.creates[c].key)
    taken: dict[str, int] = {}
    groups: list[list] = []  # [name, is_dir, nodes list, winner manifest]
    for c in kids:
        name = structure.name[c]
        is_dir = index.is_dir(c)
        manifest = None
        if not is_dir:
            w = _primary_winner(index, c)
            manifest = w.manifest if w is not None else b""
        if not rules.name_collisions:
            groups.append([name, is_dir, [c], manifest])
            continue
        key = name_key(name)
        g = taken.get(key)
        if g is not None:
            other = groups[g]
            if (other[1] and is_dir) or (not other[1] and not is_dir and other[3] == manifest):
                other[2].append(c)
                continue
            attempt = 0
            while key in taken:
                name = name_conflict_name(structure.name[c], c, is_dir, attempt)
                key = name_key(name)
                attempt += 1
        taken[key] = len(groups)
        groups.append([name, is_dir, [c], manifest])

    out: list[Entry] = []
    pending_copies: list[tuple[int, VersionOp]] = []
    for gi, (name, is_dir, nodes, _m) in enumerate(groups):
        if is_dir:
            out.append(Entry(nodes[0], EntryKind.DIR, eid, name, tuple(nodes)))
            continue
        winner, copies = winner_and_copies(index, tuple(nodes), rules)
        out.append(Entry(nodes[0], EntryKind.FILE, eid, name, tuple(nodes),
                         FileVersion.of(winner) if winner is not None else None))
        pending_copies.extend((gi, v) for v in copies)
    copy_ids: dict[int, list[str]] = {}
    for gi, v in pending_copies:
        owner = out[gi]
        name = conflicted_copy_name(owner.name, v.replica, v.counter)
        key = name_key(name)
        attempt = 0
        while rules.name_collisions and key in taken:
            name = name_conflict_name(conflicted_copy_name(owner.name, v.replica, v.counter),
                                      v.id, False, attempt)
            key = name_key(name)
            attempt += 1
        taken[key] = -1
        cid = f"{v.node}~{v.id}"
        copy_ids.setdefault(gi, []).append(cid)
        out.append(Entry(cid, EntryKind.CONFLICTED_COPY, eid, name, (v.node,), FileVersion.of(v),
                         copy_of=owner.id))
    for gi, ids in copy_ids.items():
        e = out[gi]
        out[gi] = Entry(e.id, e.kind, e.parent, e.name, e.nodes, e.version, tuple(ids))
    return out


class VisibleTree:
    """The visible tree, kept per folder; updated in place by :meth:`refresh`."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {
            ROOT_ENTRY: Entry(ROOT_ENTRY, EntryKind.DIR, "", "", (ROOT,))}
        self.kids: dict[str, dict[str, str]] = {ROOT_ENTRY: {}}  # folder -> name key -> entry
        self.node_entry: dict[str, str] = {ROOT: ROOT_ENTRY}

    @classmethod
    def build(cls, structure: Structure, index: OpIndex, rules: ProjectionRules) -> VisibleTree:
        tree = cls()
        tree.refresh({ROOT}, structure, index, rules)
        return tree

    # -- reading ---------------------------------------------------------------------------
    def path_of(self, eid: str, old: dict[str, Entry | None] | None = None) -> str:
        parts: list[str] = []
        cur = eid
        while cur != ROOT_ENTRY:
            e = old[cur] if old is not None and cur in old else self.entries[cur]
            if e is None:
                raise KeyError(cur)
            parts.append(e.name)
            cur = e.parent
        return "/".join(reversed(parts))

    def lookup(self, path: str) -> Entry | None:
        cur = ROOT_ENTRY
        for part in (p for p in path.split("/") if p):
            nxt = self.kids.get(cur, {}).get(name_key(part))
            if nxt is None:
                return None
            cur = nxt
        return self.entries[cur]

    def children(self, eid: str) -> list[Entry]:
        return sorted((self.entries[c] for c in self.kids.get(eid, {}).values()),
                      key=lambda e: e.name)

    def comparable(self) -> dict[str, Entry]:
        return dict(self.entries)

    def rebuild_kids(self, rules: ProjectionRules) -> None:
        """Recreate the per-folder name index from the entries (after loading saved entries)."""
        for eid in self.kids:
            self.kids[eid] = {}
        for e in self.entries.values():
            if e.id == ROOT_ENTRY:
                continue
            key = name_key(e.name) if rules.name_collisions else f"{name_key(e.name)}\x00{e.id}"
            self.kids.setdefault(e.parent, {})[key] = e.id

    # -- updating --------------------------------------------------------------------------
    def refresh(self, dirty_nodes: set[str], structure: Structure, index: OpIndex,
                rules: ProjectionRules) -> dict[str, Entry | None]:
        """Re-present the folders holding ``dirty_nodes``; returns old values of changed entries."""
        journal: dict[str, Entry | None] = {}
        queue = sorted({self.node_entry[n] for n in dirty_nodes if n in self.node_entry
                        and self.entries[self.node_entry[n]].is_dir})
        done: set[str] = set()
        wanted = set(queue)  # folders to re-present; one not listed yet waits to be re-homed
        dropped: list[tuple[str, str]] = []  # (entry, folder it left)
        while queue:
            eid = queue.pop()
            if eid in done or eid not in self.entries:
                continue
            folder = self.entries[eid]
            if eid != ROOT_ENTRY and not self._listed(folder):
                continue  # dropped by its parent in this pass; its listing is not its own
            done.add(eid)
            new_children = present_folder(eid, folder.nodes, structure, index, rules)
            old_ids = set(self.kids.get(eid, {}).values())
            new_kids: dict[str, str] = {}
            for child in new_children:
                new_kids[name_key(child.name)] = child.id
                before = self.entries.get(child.id)
                if before != child:
                    self._set(child, before, journal)
                    if child.is_dir and (before is None or before.nodes != child.nodes
                                         or not before.is_dir):
                        done.discard(child.id)
                        wanted.add(child.id)
                        queue.append(child.id)
                    elif child.id in wanted and child.id not in done:
                        queue.append(child.id)
            if not rules.name_collisions:
                # Duplicate keys are possible with the rule off; keep every id reachable.
                new_kids = {f"{name_key(c.name)}\x00{c.id}": c.id for c in new_children}
            self.kids[eid] = new_kids
            new_ids = set(new_kids.values())
            dropped.extend((gone, eid) for gone in old_ids - new_ids)
        for gone, folder_id in dropped:
            e = self.entries.get(gone)
            if e is not None and e.parent == folder_id and gone not in set(
                    self.kids.get(folder_id, {}).values()):
                self._remove_subtree(gone, journal)
        # An entry re-homed under a folder that was itself dropped later in this pass (only
        # possible when the cycle rule is switched off) must not survive unreachable.
        for eid in list(journal):
            if eid in self.entries and not self._reaches_root(eid):
                self._remove_subtree(eid, journal)
        return journal

    def _listed(self, e: Entry) -> bool:
        siblings = self.kids.get(e.parent, {})
        return siblings.get(name_key(e.name)) == e.id or e.id in siblings.values()

    def _reaches_root(self, eid: str) -> bool:
        seen: set[str] = set()
        cur = eid
        while cur != ROOT_ENTRY:
            e = self.entries.get(cur)
            if e is None or cur in seen or not self._listed(e):
                return False
            seen.add(cur)
            cur = e.parent
        return True

    def _set(self, entry: Entry, before: Entry | None, journal: dict[str, Entry | None]) -> None:
        journal.setdefault(entry.id, before)
        self.entries[entry.id] = entry
        if before is not None and before.kind is not EntryKind.CONFLICTED_COPY:
            for n in set(before.nodes) - set(entry.nodes):
                if self.node_entry.get(n) == entry.id:
                    del self.node_entry[n]
        if entry.kind is not EntryKind.CONFLICTED_COPY:
            for n in entry.nodes:
                self.node_entry[n] = entry.id
        if entry.is_dir:
            self.kids.setdefault(entry.id, {})
        elif entry.id in self.kids:
            self._drop_children(entry.id, journal)

    def _drop_children(self, eid: str, journal: dict[str, Entry | None]) -> None:
        for child in list(self.kids.pop(eid, {}).values()):
            if self.entries.get(child) is not None and self.entries[child].parent == eid:
                self._remove_subtree(child, journal)

    def _remove_subtree(self, eid: str, journal: dict[str, Entry | None]) -> None:
        entry = self.entries.pop(eid)
        journal.setdefault(eid, entry)
        for n in entry.nodes:
            if self.node_entry.get(n) == eid:
                del self.node_entry[n]
        self._drop_children(eid, journal)
