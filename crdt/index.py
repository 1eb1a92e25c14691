"""The op set in memory: ops by id, per node, version heads and move ancestry."""

from __future__ import annotations

from collections.abc import Iterable

from crdt.ops import TRASH, MoveOp, Op, VersionOp


class OpIndex:
    """Ops applied to the document, indexed for the projection. Ops arrive in causal order."""

    def __init__(self) -> None:
        self.moves: dict[str, MoveOp] = {}
        self.versions: dict[str, VersionOp] = {}
        self.node_moves: dict[str, list[str]] = {}
        self.node_versions: dict[str, list[str]] = {}
        self.node_deletes: dict[str, list[str]] = {}
        self.heads: dict[str, set[str]] = {}
        self.creates: dict[str, MoveOp] = {}
        self.max_t = 0

    def add(self, op: Op) -> None:
        # Hot on load (once per op): plain dict gets instead of setdefault and helpers.
        if op.t > self.max_t:
            self.max_t = op.t
        oid, node = op.id, op.node
        if type(op) is MoveOp:
            self.moves[oid] = op
            ids = self.node_moves.get(node)
            if ids is None:
                self.node_moves[node] = [oid]
            else:
                ids.append(oid)
            if node == oid:
                self.creates[oid] = op
            if op.parent == TRASH:
                self.node_deletes.setdefault(node, []).append(oid)
        else:
            self.versions[oid] = op
            ids = self.node_versions.get(node)
            if ids is None:
                self.node_versions[node] = [oid]
            else:
                ids.append(oid)
            heads = self.heads.get(node)
            if heads is None:
                self.heads[node] = {oid}
            else:
                heads.difference_update(op.base)  # type: ignore[union-attr]
                heads.add(oid)

    def bulk_load(self, moves: list[MoveOp], versions: list[VersionOp]) -> None:
        """Index a whole saved op set at once (any order; the set is causally complete)."""
        self.moves = {m.id: m for m in moves}
        self.versions = {v.id: v for v in versions}
        self.creates = {m.id: m for m in moves if m.node == m.id}
        node_moves: dict[str, list[str]] = {}
        for m in moves:
            ids = node_moves.get(m.node)
            if ids is None:
                node_moves[m.node] = [m.id]
            else:
                ids.append(m.id)
            if m.parent == TRASH:
                self.node_deletes.setdefault(m.node, []).append(m.id)
        self.node_moves = node_moves
        based = {b for v in versions for b in v.base}
        node_versions: dict[str, list[str]] = {}
        heads: dict[str, set[str]] = {}
        for v in versions:
            ids = node_versions.get(v.node)
            if ids is None:
                node_versions[v.node] = [v.id]
            else:
                ids.append(v.id)
            if v.id not in based:
                h = heads.get(v.node)
                if h is None:
                    heads[v.node] = {v.id}
                else:
                    h.add(v.id)
        self.node_versions = node_versions
        self.heads = heads
        self.max_t = max((o.t for o in (*moves, *versions)), default=0)

    def add_all(self, ops: Iterable[Op]) -> None:
        for op in ops:
            self.add(op)

    def get(self, op_id: str) -> Op | None:
        return self.moves.get(op_id) or self.versions.get(op_id)

    def is_dir(self, node: str) -> bool:
        create = self.creates.get(node)
        return bool(create is not None and create.is_dir)

    def move_ancestry(self, move_id: str) -> set[str]:
        """The move and every move reachable through ``prev`` (the moves its author had seen)."""
        out: set[str] = set()
        stack = [move_id]
        while stack:
            cur = stack.pop()
            if cur in out:
                continue
            out.add(cur)
            op = self.moves.get(cur)
            if op is not None:
                stack.extend(op.prev)
        return out

    def move_heads(self, node: str) -> list[str]:
        """Moves of ``node`` no other move of it has seen: what a new move's ``prev`` lists."""
        ids = self.node_moves.get(node, [])
        covered: set[str] = set()
        for mid in ids:
            covered.update(self.moves[mid].prev)
        return sorted(m for m in ids if m not in covered)

    def version_heads(self, node: str) -> set[str]:
        return self.heads.get(node, set())
