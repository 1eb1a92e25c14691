"""History of a node, the tree as of an earlier point, and restoring a folder to that point."""

from __future__ import annotations

from collections.abc import Callable

from crdt.batch import OpBatch, split_path
from crdt.errors import NotFound
from crdt.index import OpIndex
from crdt.names import with_suffix
from crdt.projection import full_projection
from crdt.results import FileContent, MoveRecord, NodeHistory, VersionRecord
from crdt.rules import ProjectionRules
from crdt.updates import UpdateLog, VersionVector
from crdt.view import EntryKind, FileVersion, VisibleTree


def node_history(index: OpIndex, node: str) -> NodeHistory:
    if node not in index.creates:
        raise NotFound(node)
    moves = sorted((index.moves[m] for m in index.node_moves.get(node, ())), key=lambda m: m.key)
    versions = sorted((index.versions[v] for v in index.node_versions.get(node, ())),
                      key=lambda v: v.key)
    return NodeHistory(
        node,
        tuple(MoveRecord(m.id, m.replica, m.t, m.w, m.parent, m.name, m.is_delete)
              for m in moves),
        tuple(VersionRecord(v, v.t, v.w, v.base) for v in versions),
    )


def closed_vector(log: UpdateLog, vector: VersionVector) -> VersionVector:
    """The largest causally closed set of applied updates within ``vector``."""
    vec = {r: min(s, log.have(r)) for r, s in vector.items() if s > 0}
    changed = True
    while changed:
        changed = False
        for r in list(vec):
            s = vec[r]
            while s > 0:
                info = log.get(r, s)
                if info is not None and all(vec.get(x, 0) >= n for x, n in info.seen):
                    break
                s -= 1
            if s != vec[r]:
                vec[r] = s
                changed = True
    return {r: s for r, s in vec.items() if s > 0}


def vector_at(log: UpdateLog, time_ms: int) -> VersionVector:
    """The updates written at or before ``time_ms`` (by their authors' clocks), causally closed."""
    vec: VersionVector = {}
    for replica, updates in log.by_replica.items():
        n = 0
        while n < len(updates) and updates[n].w <= time_ms:
            n += 1
        vec[replica] = n
    return closed_vector(log, vec)


def tree_as_of(index: OpIndex, log: UpdateLog, rules: ProjectionRules,
               vector: VersionVector) -> VisibleTree:
    """The visible tree computed from exactly the updates inside ``vector`` (causally closed)."""
    vec = closed_vector(log, vector)
    subset = OpIndex()
    ops = []
    for r, s in vec.items():
        for u in log.by_replica[r][:s]:
            for oid in u.op_ids:
                op = index.get(oid)
                if op is not None:
                    ops.append(op)
    subset.add_all(sorted(ops, key=lambda o: o.key))
    return full_projection(subset, rules)[2]


def restore_into(batch: OpBatch, now: VisibleTree, then: VisibleTree, path: str,
                 max_head: Callable[[str], str]) -> None:
    """Add to ``batch`` the ops that bring folder ``path`` of ``now`` back to ``then``."""
    root = then.lookup(path)
    if root is None or not root.is_dir:
        raise NotFound(path)
    created: dict[str, str] = {}  # folder path -> node created in this batch

    def folder_node(p: str) -> str | None:
        if p in created:
            return created[p]
        cur = now.lookup(p)
        if cur is not None:
            return cur.nodes[0] if cur.is_dir else None
        parent_path, name = split_path(p)
        parent = folder_node(parent_path)
        if parent is None:
            return None
        created[p] = batch.move(None, parent, name, is_dir=True)
        return created[p]

    def restore_file(full: str, version: FileVersion) -> None:
        content = FileContent(version.manifest, version.size, version.mtime_ms,
                              version.executable)
        cur = now.lookup(full)
        if cur is not None and cur.kind is EntryKind.FILE:
            if cur.version is None or cur.version.manifest != version.manifest:
                for node in cur.nodes:
                    batch.version(node, content, (max_head(node),))
            return
        parent_path, name = split_path(full)
        parent = folder_node(parent_path)
        if parent is None:
            return  # the parent path is a file now: nothing sensible to restore into
        if cur is not None:
            name = with_suffix(name, "restored", is_dir=False)
            if now.lookup(f"{parent_path}/{name}" if parent_path else name) is not None:
                return
        node = batch.move(None, parent, name, is_dir=False)
        batch.version(node, content, ())

    base = "/".join(x for x in path.split("/") if x)
    stack = [(base, root.id)]
    while stack:
        prefix, eid = stack.pop()
        for child in then.children(eid):
            full = f"{prefix}/{child.name}" if prefix else child.name
            if child.is_dir:
                folder_node(full)
                stack.append((full, child.id))
            elif child.kind is EntryKind.FILE and child.version is not None:
                restore_file(full, child.version)
