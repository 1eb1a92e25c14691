"""The projection: op set -> visible tree, kept up to date as updates arrive.

:func:`full_projection` recomputes everything from the op set (the oracle); :class:`Projection`
applies each update incrementally (see :mod:`crdt.incremental`) and re-presents only the folders it
touched. Both give the same tree for the same op set; the randomized tests check that after every
step.
"""

from __future__ import annotations

from crdt.incremental import IncrementalStructure
from crdt.index import OpIndex
from crdt.ops import TRASH, Op
from crdt.rules import ProjectionRules
from crdt.structure import Structure, project_structure
from crdt.view import Entry, VisibleTree


def full_projection(index: OpIndex, rules: ProjectionRules) -> tuple[Structure, set[str],
                                                                      VisibleTree]:
    structure, void = project_structure(index, rules)
    return structure, void, VisibleTree.build(structure, index, rules)


def dirty_between(old: Structure, new: Structure) -> set[str]:
    """Folders whose listing may differ between two structures."""
    dirty: set[str] = set()
    for node, parent in new.parent.items():
        if old.parent.get(node) != parent or old.name.get(node) != new.name[node]:
            dirty.add(parent)
            if node in old.parent:
                dirty.add(old.parent[node])
    for node, parent in old.parent.items():
        if node not in new.parent:
            dirty.add(parent)
    dirty.discard(TRASH)
    return dirty


class Projection:
    """Structure + visible tree for one op index, updated per applied update."""

    def __init__(self, index: OpIndex, rules: ProjectionRules) -> None:
        self.index = index
        self.rules = rules
        self.inc = IncrementalStructure.from_scratch(index, rules)
        self.view = VisibleTree.build(self.inc.structure, index, rules)

    @property
    def structure(self) -> Structure:
        return self.inc.structure

    @property
    def void(self) -> set[str]:
        return self.inc.void

    def apply(self, ops: list[Op]) -> dict[str, Entry | None]:
        """Fold freshly indexed ``ops`` in; returns the journal of changed entries."""
        dirty = self.inc.apply(ops)
        parent = self.structure.parent
        for op in ops:
            if op.node in parent:
                dirty.add(parent[op.node])
        dirty.discard(TRASH)
        return self.view.refresh(dirty, self.structure, self.index, self.rules)
