"""Rules 1–3 of the projection: which deletes are void, and where each node sits.

The structure is the node tree after replaying the non-void moves in total order, with the
Kleppmann cycle skip. Nodes whose parent is TRASH are deleted; everything reachable from ROOT is
visible. Presentation (names, merges, conflicted copies) is layered on top in :mod:`crdt.view`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crdt.index import OpIndex
from crdt.names import name_key
from crdt.ops import ROOT, TRASH, MoveOp
from crdt.rules import ProjectionRules


@dataclass
class Structure:
    parent: dict[str, str] = field(default_factory=dict)
    name: dict[str, str] = field(default_factory=dict)
    effective: dict[str, str] = field(default_factory=dict)  # node -> move op that placed it
    children: dict[str, set[str]] = field(default_factory=dict)
    key: dict[str, str] = field(default_factory=dict)  # node -> name_key(name)
    # folder node -> name key -> children with that key (the view re-presents one key at a time)
    named: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    def place(self, node: str, parent: str, name: str, move_id: str) -> None:
        if node in self.parent:
            self._detach(node)
        key = self.key[node] = name_key(name)
        self.parent[node] = parent
        self.name[node] = name
        self.effective[node] = move_id
        kids = self.children.get(parent)
        if kids is None:
            self.children[parent] = {node}
        else:
            kids.add(node)
        by_key = self.named.get(parent)
        if by_key is None:
            self.named[parent] = {key: {node}}
        else:
            same = by_key.get(key)
            if same is None:
                by_key[key] = {node}
            else:
                same.add(node)

    def _detach(self, node: str) -> None:
        old = self.parent[node]
        kids = self.children[old]
        kids.discard(node)
        if not kids:
            del self.children[old]
        by_key = self.named[old]
        key = self.key[node]
        same = by_key[key]
        same.discard(node)
        if not same:
            del by_key[key]
            if not by_key:
                del self.named[old]

    def unplace(self, node: str) -> None:
        self._detach(node)
        del self.parent[node]
        del self.name[node]
        del self.effective[node]
        del self.key[node]

    def is_ancestor(self, anc: str, node: str) -> bool:
        """True if ``anc`` is ``node`` or one of its ancestors (bounded: safe with cycles)."""
        cur: str | None = node
        for _ in range(len(self.parent) + 2):
            if cur == anc:
                return True
            if cur is None or cur in (ROOT, TRASH):
                return False
            cur = self.parent.get(cur)
        return False


def delete_is_void(index: OpIndex, delete: MoveOp, rules: ProjectionRules) -> bool:
    """Rules 1a and 1b: a concurrent move, or a version head the delete had not seen, voids it."""
    node = delete.node
    if rules.edit_beats_delete:
        seen = set(delete.seen)
        if any(h not in seen for h in index.version_heads(node)):
            return True
    if rules.move_beats_delete:
        anc = index.move_ancestry(delete.id)
        for mid in index.node_moves.get(node, ()):
            if mid in anc:
                continue
            other = index.moves[mid]
            if other.is_delete:
                continue
            if delete.id not in index.move_ancestry(mid):
                return True
    return False


def void_deletes(index: OpIndex, rules: ProjectionRules, nodes: set[str] | None = None) -> set[str]:
    """Deletes voided by rules 1a/1b (among the deletes of ``nodes``, or of every node)."""
    out: set[str] = set()
    items = index.node_deletes.items() if nodes is None else (
        (n, index.node_deletes.get(n, [])) for n in nodes)
    for _node, deletes in items:
        for did in deletes:
            if delete_is_void(index, index.moves[did], rules):
                out.add(did)
    return out


def apply_move(structure: Structure, op: MoveOp, rules: ProjectionRules) -> bool:
    """Apply one move to the structure; False when the cycle rule skips it."""
    if (
        rules.cycle_skip
        and op.parent not in (ROOT, TRASH)
        and structure.is_ancestor(op.node, op.parent)
    ):
        return False
    if op.parent not in (ROOT, TRASH) and op.parent not in structure.parent:
        # The parent's own create was skipped or not yet placed: nothing to hang on to.
        return False
    structure.place(op.node, op.parent, op.name, op.id)
    return True


def replay(index: OpIndex, void: set[str], rules: ProjectionRules) -> Structure:
    structure = Structure()
    for op in sorted((m for m in index.moves.values() if m.id not in void), key=_key):
        apply_move(structure, op, rules)
    return structure


def _key(op: MoveOp) -> tuple[int, str, int]:
    return op.key


def stranded_deletes(structure: Structure) -> set[str]:
    """Rule 3: the effective delete of every deleted node that still has (unseen) children."""
    kids = structure.children.get(TRASH, set())
    return {structure.effective[n] for n in kids if structure.children.get(n)}


def project_structure(index: OpIndex, rules: ProjectionRules) -> tuple[Structure, set[str]]:
    """The full recompute of rules 1–3: the oracle the incremental projection is checked against."""
    void = void_deletes(index, rules)
    while True:
        structure = replay(index, void, rules)
        if not rules.revive_unseen:
            return structure, void
        more = stranded_deletes(structure) - void
        if not more:
            return structure, void
        void |= more
