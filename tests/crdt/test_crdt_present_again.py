"""The incremental presentation's safety net: an update that leaves a changed entry cut off from
the root (a cycle of stale entries; seed 1220 of the simulation) is presented again from the
structure, and a path walk never runs forever."""

from __future__ import annotations

import dataclasses

import pytest

from crdt.errors import CorruptState
from crdt.projection import full_projection
from crdt.tree import FolderTree
from tests.crdt.crdt_sim import identity


def _tree() -> FolderTree:
    tree = FolderTree(identity(0))
    for path in ("docs", "photos", "photos/2024"):
        tree.mkdir(path, now_ms=1_000)
    return tree


def _cut_off(tree: FolderTree) -> dict[str, object]:
    """Make docs and photos each other's parent in the presented tree, as the stale entries of
    seed 1220 were; returns the journal an update would have produced."""
    view = tree.view
    docs, photos = view.lookup("docs"), view.lookup("photos")
    assert docs is not None
    assert photos is not None
    view.entries[docs.id] = dataclasses.replace(docs, parent=photos.id)
    view.entries[photos.id] = dataclasses.replace(photos, parent=docs.id)
    return {docs.id: docs, photos.id: photos}


def test_a_path_walk_through_a_cycle_is_refused_not_endless() -> None:
    tree = _tree()
    _cut_off(tree)
    docs = next(e for e in tree.view.entries.values() if e.name == "docs")
    with pytest.raises(CorruptState, match="does not lead to the root"):
        tree.view.path_of(docs.id)


def test_a_cut_off_entry_makes_the_tree_presented_again_as_the_oracle_does() -> None:
    tree = _tree()
    projection = tree.projection
    before = dict(projection.view.entries)
    journal = _cut_off(tree)
    assert not projection._whole(journal)  # type: ignore[arg-type]
    fixed = projection._present_again(journal)  # type: ignore[arg-type]
    _, _, oracle = full_projection(tree.index, tree.rules)
    assert projection.view.entries == oracle.entries == before
    assert tree.view.path_of(tree.view.lookup("photos/2024").id) == "photos/2024"  # type: ignore[union-attr]
    assert fixed == {}  # back to exactly the tree before: nothing changed for the caller
