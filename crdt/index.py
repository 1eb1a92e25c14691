"""The op set in memory: ops by id, per node, version heads and move ancestry."""

from __future__ import annotations

from collections.abc import Iterable

from crdt.ops import MoveOp, Op, VersionOp


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
        self.max_t = max(self.max_t, op.t)
        if isinstance(op, MoveOp):
            self.moves[op.id] = op
            self.node_moves.setdefault(op.node, []).append(op.id)
            if op.is_create:
                self.creates[op.id] = op
            if op.is_delete:
                self.node_deletes.setdefault(op.node, []).append(op.id)
        else:
            self.versions[op.id] = op
            self.node_versions.setdefault(op.node, []).append(op.id)
            heads = self.heads.setdefault(op.node, set())
            heads.difference_update(op.base)
            heads.add(op.id)

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
