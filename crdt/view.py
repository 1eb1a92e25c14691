"""The visible tree, kept per folder and name key and updated in place.

A visible entry is a folder (possibly several same-name folder nodes merged), a file (possibly
several same-name, same-content file nodes shown once) or a conflicted copy (a losing version head
of a file). A change re-presents only the (folder, name key) buckets it touched
(:func:`crdt.present.present_bucket`).
"""

from __future__ import annotations

from crdt.entries import ROOT_ENTRY, Entry, EntryKind, FileVersion
from crdt.errors import CorruptState
from crdt.index import OpIndex
from crdt.names import name_key
from crdt.ops import ROOT
from crdt.present import kid_key, present_bucket, winner_and_copies
from crdt.rules import DEFAULT_RULES, ProjectionRules
from crdt.structure import Structure

__all__ = ["ROOT_ENTRY", "Entry", "EntryKind", "FileVersion", "VisibleTree", "kid_key",
           "present_bucket", "winner_and_copies"]


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
            if len(parts) > len(self.entries) + len(old or ()):  # a cycle: never walk forever
                raise CorruptState(f"entry {eid} does not lead to the root folder")
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
