"""Rules 4–5 of the projection: what a folder lists, given the structure.

A visible entry is a folder (possibly several same-name folder nodes merged), a file (possibly
several same-name, same-content file nodes shown once) or a conflicted copy (a losing version head
of a file). The tree is kept per folder, so a change re-presents only the folders it touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from crdt.index import OpIndex
from crdt.names import conflicted_copy_name, name_conflict_name, name_key
from crdt.ops import ROOT, VersionOp
from crdt.rules import DEFAULT_RULES, ProjectionRules
from crdt.structure import Structure

ROOT_ENTRY = ROOT


class EntryKind(StrEnum):
    DIR = "dir"
    FILE = "file"
    CONFLICTED_COPY = "conflicted_copy"


# A file version as the visible tree shows it is its version op: ``version_id``, ``manifest``
# (the manifest or single block id), ``size``, ``mtime_ms`` and ``author`` (plus ``t``, ``w``,
# ``base``). Sharing the op object keeps 100k-file trees a hundred thousand objects lighter.
FileVersion = VersionOp


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


def kid_key(entry: Entry, rules: ProjectionRules) -> str:
    """The key an entry is listed under in its folder (unique per folder)."""
    key = name_key(entry.name)
    return key if rules.name_collisions else f"{key}\x00{entry.id}"


class _Group:
    __slots__ = ("is_dir", "manifest", "name", "nodes")

    def __init__(self, name: str, is_dir: bool, node: str, manifest: bytes | None) -> None:
        self.name = name
        self.is_dir = is_dir
        self.nodes = [node]
        self.manifest = manifest


def present_bucket(eid: str, folder_nodes: tuple[str, ...], key: str, structure: Structure,
                   index: OpIndex, rules: ProjectionRules) -> tuple[list[Entry], list[str]]:
    """Rule 5 for the children of ``folder_nodes`` whose names share ``key``.

    The earliest created child keeps its name; a later folder merges into it if it is a folder, a
    later file with equal content is shown once with it, anything else gets a name-conflict
    name. Generated names (name conflicts, conflicted copies) avoid every real name key in the
    folder, so each key's listing depends only on its own children. Returns the entries and the
    generated-name keys that were tried (a bucket must be re-presented when one of them appears
    or disappears as a real name).
    """
    named = structure.named
    kids = [c for n in folder_nodes for c in named.get(n, {}).get(key, ())]
    if not kids:
        return [], []
    if len(kids) == 1:
        # The common case, kept cheap: one child under this key and at most one version head.
        c = kids[0]
        if index.is_dir(c):
            return [Entry(c, EntryKind.DIR, eid, structure.name[c], (c,))], []
        heads = index.heads.get(c)
        if not heads or len(heads) == 1:
            version = index.versions[next(iter(heads))] if heads else None
            return [Entry(c, EntryKind.FILE, eid, structure.name[c], (c,), version)], []
    kids.sort(key=lambda c: index.creates[c].key)
    tried: list[str] = []

    def is_real(k: str) -> bool:
        return any(k in named.get(n, ()) for n in folder_nodes)

    def generated(first: str, make: Callable[[int], str]) -> str:
        name, attempt = first, 0
        while True:
            k = name_key(name)
            tried.append(k)
            if not rules.name_collisions or not is_real(k):
                return name
            name = make(attempt)
            attempt += 1

    groups: list[_Group] = []
    for c in kids:
        is_dir = index.is_dir(c)
        manifest = None
        if not is_dir:
            w = _primary_winner(index, c)
            manifest = w.manifest if w is not None else b""
        if groups and rules.name_collisions:
            first = groups[0]
            if (first.is_dir and is_dir) or (not first.is_dir and not is_dir
                                           and first.manifest == manifest):
                first.nodes.append(c)
                continue
            real = structure.name[c]
            name = generated(
                name_conflict_name(real, c, is_dir),
                lambda a, real=real, c=c, d=is_dir: name_conflict_name(real, c, d, a + 1))
        else:
            name = structure.name[c]
        groups.append(_Group(name, is_dir, c, manifest))

    out: list[Entry] = []
    for g in groups:
        nodes = tuple(g.nodes)
        if g.is_dir:
            out.append(Entry(nodes[0], EntryKind.DIR, eid, g.name, nodes))
            continue
        winner, copies = winner_and_copies(index, nodes, rules)
        copy_entries: list[Entry] = []
        for v in copies:
            base = conflicted_copy_name(g.name, v.replica, v.counter)
            name = generated(
                base, lambda a, base=base, v=v: name_conflict_name(base, v.id, False, a))
            copy_entries.append(Entry(f"{v.node}~{v.id}", EntryKind.CONFLICTED_COPY, eid, name,
                                      (v.node,), v, copy_of=nodes[0]))
        out.append(Entry(nodes[0], EntryKind.FILE, eid, g.name, nodes,
                         winner,
                         tuple(e.id for e in copy_entries)))
        out.extend(copy_entries)
    return out, tried


class VisibleTree:
    """The visible tree, kept per folder and name key; updated in place by :meth:`refresh`."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {
            ROOT_ENTRY: Entry(ROOT_ENTRY, EntryKind.DIR, "", "", (ROOT,))}
        self.kids: dict[str, dict[str, str]] = {ROOT_ENTRY: {}}  # folder -> kid key -> entry
        self.node_entry: dict[str, str] = {ROOT: ROOT_ENTRY}
        # folder -> bucket (real name key) -> ((entry id, kid key), ...) it presented
        self.buckets: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {}
        # folder -> generated-name key tried -> buckets that tried it
        self.gen: dict[str, dict[str, set[str]]] = {}
        self.tried: dict[tuple[str, str], tuple[str, ...]] = {}  # (folder, bucket) -> keys
        self.kid_bucket: dict[str, dict[str, str]] = {}  # folder -> kid key -> bucket holding it
        self.rules: ProjectionRules = DEFAULT_RULES

    @classmethod
    def build(cls, structure: Structure, index: OpIndex, rules: ProjectionRules) -> VisibleTree:
        tree = cls()
        tree.rules = rules
        tree.refresh(set(), {ROOT}, structure, index, rules)
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

    def restore_index(self, rows: list[tuple[Entry, str, str]],
                      tried: list[tuple[str, str, list[str]]], rules: ProjectionRules) -> None:
        """Recreate listings from saved ``(entry, bucket key, kid key)`` rows and tried keys."""
        self.rules = rules
        for e, bucket, kk in rows:
            self.kids.setdefault(e.parent, {})[kk] = e.id
            self.kid_bucket.setdefault(e.parent, {})[kk] = bucket
            folder = self.buckets.setdefault(e.parent, {})
            folder[bucket] = (*folder.get(bucket, ()), (e.id, kk))
        for eid, bucket, keys in tried:
            self.tried[(eid, bucket)] = tuple(keys)
            gen = self.gen.setdefault(eid, {})
            for k in keys:
                gen.setdefault(k, set()).add(bucket)

    # -- updating --------------------------------------------------------------------------
    def refresh(self, dirty: set[tuple[str, str]], whole: set[str], structure: Structure,
                index: OpIndex, rules: ProjectionRules) -> dict[str, Entry | None]:
        """Re-present the (folder node, name key) buckets in ``dirty`` and the folders in
        ``whole``; returns the old values of the entries that changed."""
        self.rules = rules
        run = _Refresh(self, structure, index, rules)
        # Sorted, so the pass does the same work in the same order under any hash seed.
        for fnode, key in sorted(dirty):
            run.schedule_node(fnode, key)
        for fnode in sorted(whole):
            run.schedule_node(fnode, None)
        return run.finish()

    def _listed(self, e: Entry) -> bool:
        return self.kids.get(e.parent, {}).get(kid_key(e, self.rules)) == e.id

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

    def _drop_children(self, eid: str, journal: dict[str, Entry | None]) -> None:
        self.buckets.pop(eid, None)
        self.kid_bucket.pop(eid, None)
        for bucket in self.gen.pop(eid, {}).values():
            for b in bucket:
                self.tried.pop((eid, b), None)
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


class _Refresh:
    """One pass of :meth:`VisibleTree.refresh`."""

    def __init__(self, tree: VisibleTree, structure: Structure, index: OpIndex,
                 rules: ProjectionRules) -> None:
        self.tree = tree
        self.structure = structure
        self.index = index
        self.rules = rules
        self.journal: dict[str, Entry | None] = {}
        self.work: dict[str, set[str] | None] = {}  # folder -> buckets to redo (None: all)
        self.deferred: dict[str, set[str] | None] = {}  # work for folders not listed (yet)
        self.queue: list[str] = []
        self.dropped: list[tuple[str, str]] = []  # (entry, folder it left)

    def schedule_node(self, fnode: str, key: str | None) -> None:
        eid = self.tree.node_entry.get(fnode)
        if eid is not None and self.tree.entries[eid].is_dir:
            self.schedule(eid, key)

    def schedule(self, eid: str, key: str | None) -> None:
        have = self.work.get(eid, set())
        if eid not in self.work:
            self.queue.append(eid)
        if key is None or have is None:
            self.work[eid] = None
        else:
            have.add(key)
            self.work[eid] = have

    def _reschedule_deferred(self, eid: str) -> None:
        if eid in self.deferred:
            work = self.deferred.pop(eid)
            if work is None:
                self.schedule(eid, None)
            else:
                for k in work:
                    self.schedule(eid, k)

    def finish(self) -> dict[str, Entry | None]:
        tree = self.tree
        self._drain()
        # A folder deferred because an ancestor was dropped gets its turn once re-homed.
        while ready := [eid for eid in self.deferred
                        if eid in tree.entries and tree._reaches_root(eid)]:
            for eid in sorted(ready):
                self._reschedule_deferred(eid)
            self._drain()
        for gone, folder_id in self.dropped:
            e = tree.entries.get(gone)
            if e is not None and e.parent == folder_id and not tree._listed(e):
                tree._remove_subtree(gone, self.journal)
        # An entry re-homed under a folder that was itself dropped later in this pass (only
        # possible when the cycle rule is switched off) must not survive unreachable.
        if not self.rules.cycle_skip:
            for eid in list(self.journal):
                if eid in tree.entries and not tree._reaches_root(eid):
                    tree._remove_subtree(eid, self.journal)
        return self.journal

    def _drain(self) -> None:
        tree = self.tree
        while self.queue:
            eid = self.queue.pop()
            if eid not in self.work:
                continue
            work = self.work.pop(eid)
            folder = tree.entries.get(eid)
            if folder is None:
                continue
            if eid != ROOT_ENTRY and not tree._reaches_root(eid):
                # It or an ancestor was dropped in this pass (maybe re-homed later): its
                # listing waits, so a stale folder never claims children back.
                prior = self.deferred.get(eid, set())
                self.deferred[eid] = None if work is None or prior is None else prior | work
                continue
            if work is None:
                keys = set(tree.buckets.get(eid, {}))
                for n in folder.nodes:
                    keys.update(self.structure.named.get(n, ()))
            else:
                keys = work
            for key in sorted(keys):
                self._present(eid, folder, key)

    def _present(self, eid: str, folder: Entry, key: str) -> None:
        tree, rules = self.tree, self.rules
        new, tried = present_bucket(eid, folder.nodes, key, self.structure, self.index, rules)
        buckets = tree.buckets.setdefault(eid, {})
        old = buckets.get(key, ())
        listing = tree.kids.setdefault(eid, {})
        holder = tree.kid_bucket.setdefault(eid, {})
        for oid, kk in old:
            if listing.get(kk) == oid and holder.get(kk) == key:
                del listing[kk]
                del holder[kk]
        gen = tree.gen.setdefault(eid, {})
        for k in tree.tried.pop((eid, key), ()):
            owners = gen.get(k)
            if owners is not None:
                owners.discard(key)
                if not owners:
                    del gen[k]
        presented: list[tuple[str, str]] = []
        for e in new:
            before = tree.entries.get(e.id)
            if before != e:
                tree._set(e, before, self.journal)
                if e.is_dir and (before is None or before.nodes != e.nodes):
                    self.deferred.pop(e.id, None)
                    self.schedule(e.id, None)
                else:
                    self._reschedule_deferred(e.id)
            if rules.name_collisions and e.name is self.structure.name.get(e.id):
                kk = key  # listed under its own real name: the bucket key
            else:
                kk = kid_key(e, rules)
            listing[kk] = e.id
            holder[kk] = key
            presented.append((e.id, kk))
        if presented:
            buckets[key] = tuple(presented)
        else:
            buckets.pop(key, None)
        if tried:
            tree.tried[(eid, key)] = tuple(tried)
            for k in tried:
                gen.setdefault(k, set()).add(key)
        new_ids = {i for i, _ in presented}
        self.dropped.extend((oid, eid) for oid, _ in old if oid not in new_ids)
        if bool(old) != bool(presented):
            # This real name key appeared or vanished: generated names that tried it may change.
            for owner in sorted(gen.get(key, ())):
                if owner != key:
                    self.schedule(eid, owner)
