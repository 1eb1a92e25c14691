"""Rules 1–3 kept up to date per update, instead of a replay of the whole op log.

The applied moves are kept in total order with, for each, where its node was before (an undo log,
as in Kleppmann et al. 2021). An update whose moves all sort after the last applied one is applied
on top in O(depth) per move; otherwise the log is undone back to the earliest affected position and
redone with the new ops merged in. Deletes whose void status changes (rules 1a/1b are re-checked for
the touched nodes only) are removed from or put back into the log the same way. Rule 3 (unseen
children revive their deleted folder) is checked for the nodes whose place changed.

One case falls back to the full recompute: a change inside a folder that rule 3 revived, because
whether it stays revived depends on the final state of its whole subtree.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from crdt.index import OpIndex
from crdt.names import name_key
from crdt.ops import ROOT, TRASH, MoveOp, Op, OrderKey
from crdt.rules import ProjectionRules
from crdt.structure import Structure, apply_move, stranded_deletes, void_deletes

Placement = tuple[str, str, str]  # parent, name, effective move


class IncrementalStructure:
    def __init__(self, index: OpIndex, rules: ProjectionRules) -> None:
        self.index = index
        self.rules = rules
        self.structure = Structure()
        self.void_ab: set[str] = set()  # deletes voided by rules 1a/1b
        self.void_c: set[str] = set()  # deletes voided by rule 3
        self.keys: list[OrderKey] = []  # considered (non-void) moves in total order
        # per considered move: (move id, its node's placement before it, whether it applied)
        self.undo: list[tuple[str, Placement | None, bool]] = []
        self.fallbacks = 0  # full recomputes (rule 3 cases)
        self.redone = 0  # moves undone and redone because an op sorted before applied ones

    @property
    def void(self) -> set[str]:
        return self.void_ab | self.void_c

    @classmethod
    def from_scratch(cls, index: OpIndex, rules: ProjectionRules) -> IncrementalStructure:
        inc = cls(index, rules)
        inc._rebuild()
        return inc

    def _rebuild(self) -> None:
        """The full replay (rules 1–3 from scratch), keeping the undo log this time."""
        self.void_ab = void_deletes(self.index, self.rules)
        self.void_c = set()
        while True:
            self.structure = Structure()
            self.keys = []
            self.undo = []
            void = self.void_ab | self.void_c
            before: dict[str, Placement | None] = {}
            for op in sorted((m for m in self.index.moves.values() if m.id not in void),
                             key=lambda m: m.key):
                self._do(op, before)
            if not self.rules.revive_unseen:
                return
            more = stranded_deletes(self.structure) - void
            if not more:
                return
            self.void_c |= more

    # -- primitives --------------------------------------------------------------------------
    def _placement(self, node: str) -> Placement | None:
        s = self.structure
        parent = s.parent.get(node)
        return None if parent is None else (parent, s.name[node], s.effective[node])

    def _do(self, op: MoveOp, before: dict[str, Placement | None]) -> None:
        prev = self._placement(op.node)
        applied = apply_move(self.structure, op, self.rules)
        if applied:
            before.setdefault(op.node, prev)
        self.keys.append(op.key)
        self.undo.append((op.id, prev, applied))

    def _rewrite(self, insert: Iterable[MoveOp], remove: set[str],
                 before: dict[str, Placement | None]) -> None:
        """Undo back to the earliest position touched; redo with ``insert``, without ``remove``."""
        insert = list(insert)
        positions = [bisect.bisect_left(self.keys, m.key) for m in insert]
        for d in remove:
            i = bisect.bisect_left(self.keys, self.index.moves[d].key)
            if i < len(self.keys) and self.undo[i][0] == d:
                positions.append(i)
        if not positions:
            return
        start = min(positions)
        redo: list[MoveOp] = []
        for i in range(len(self.keys) - 1, start - 1, -1):
            mid, prev, applied = self.undo[i]
            op = self.index.moves[mid]
            if applied:
                before.setdefault(op.node, self._placement(op.node))
                if prev is None:
                    self.structure.unplace(op.node)
                else:
                    self.structure.place(op.node, *prev)
            if mid not in remove:
                redo.append(op)
        del self.keys[start:]
        del self.undo[start:]
        self.redone += len(redo)
        redo.extend(insert)
        redo.sort(key=lambda m: m.key)
        for op in redo:
            self._do(op, before)

    def _stranded(self, changed: Iterable[str]) -> set[str]:
        """Rule 3: deleted nodes that hold a child, found from the nodes whose place changed."""
        s = self.structure
        tops: set[str] = set()
        limit = len(s.parent) + 1
        for n in changed:
            parent = s.parent.get(n)
            if parent is None:
                continue
            if parent == TRASH:
                if s.children.get(n):
                    tops.add(n)
                continue
            cur, steps = parent, 0
            while cur not in (ROOT, TRASH) and steps < limit:
                up = s.parent.get(cur)
                if up == TRASH:
                    tops.add(cur)
                    break
                if up is None:
                    break
                cur, steps = up, steps + 1
        return tops

    def _touches(self, revived: set[str], before: dict[str, Placement | None]) -> bool:
        """Did a node inside (or at) a folder revived by rule 3 change place?"""
        s = self.structure
        limit = len(s.parent) + 1
        for n, old in before.items():
            for start in (old[0] if old else None, s.parent.get(n)):
                cur, steps = n, 0
                nxt = start
                while steps < limit:
                    if cur in revived:
                        return True
                    if nxt is None or nxt in (ROOT, TRASH):
                        break
                    cur = nxt
                    prior = before.get(cur)
                    nxt = prior[0] if prior else s.parent.get(cur)
                    steps += 1
        return False

    # -- the update ---------------------------------------------------------------------------
    def apply(self, ops: list[Op]) -> set[tuple[str, str]]:
        """Fold in freshly indexed ops; returns the (folder node, name key) buckets touched."""
        index, rules = self.index, self.rules
        before: dict[str, Placement | None] = {}
        touched = {op.node for op in ops}
        old_ab = {d for n in touched for d in index.node_deletes.get(n, ()) if d in self.void_ab}
        new_ab = void_deletes(index, rules, touched)
        self.void_ab = (self.void_ab - old_ab) | new_ab
        new_ids = {op.id for op in ops}
        insert = [op for op in ops if isinstance(op, MoveOp) and op.id not in new_ab]
        insert += [index.moves[d] for d in old_ab - new_ab if d not in self.void_c]
        remove = {d for d in new_ab - old_ab if d not in new_ids}
        revived = {index.moves[d].node for d in self.void_c}
        self._rewrite(insert, remove, before)
        while rules.revive_unseen:
            tops = self._stranded(list(before))
            if not tops:
                break
            more = {self.structure.effective[t] for t in tops}
            self.void_c |= more
            self._rewrite((), more, before)
        if revived and (self._touches(revived, before) or any(
                not self.structure.children.get(n) for n in revived)):
            return self._fall_back(before)
        return self._dirty(before)

    def _dirty(self, before: dict[str, Placement | None]) -> set[tuple[str, str]]:
        dirty: set[tuple[str, str]] = set()
        for n, old in before.items():
            now = self._placement(n)
            if now != old:
                _mark(dirty, old, now)
        return dirty

    def _fall_back(self, before: dict[str, Placement | None]) -> set[tuple[str, str]]:
        self.fallbacks += 1
        old = {n: self._placement(n) for n in self.structure.parent}
        for n, p in before.items():
            old[n] = p
        self._rebuild()
        dirty: set[tuple[str, str]] = set()
        for n in set(old) | set(self.structure.parent):
            was, now = old.get(n), self._placement(n)
            if was != now:
                _mark(dirty, was, now)
        return dirty


def _mark(dirty: set[tuple[str, str]], was: Placement | None, now: Placement | None) -> None:
    """The (folder, name key) buckets a node left and joined."""
    for place in (was, now):
        if place is not None and place[0] != TRASH:
            dirty.add((place[0], name_key(place[1])))
