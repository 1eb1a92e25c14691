"""Saving and loading a folder tree: the document, the update log and (optionally) the projection.

The update log is replication metadata the document does not hold (which ops came in which update
of which replica, and what each update had seen), so it is always saved. The projection is saved
too, so a restart does not recompute it ("warm" load); ``use_projection=False`` recomputes it from
the ops ("cold" load), which is also what happens when the saved projection was made under other
rules. The blob is ``MAGIC | blake2b-128(payload) | payload`` with a msgpack payload.
"""

from __future__ import annotations

import hashlib
from dataclasses import astuple
from typing import Any

import msgpack

from crdt.errors import CorruptState
from crdt.gcpause import paused_gc
from crdt.identity import ReplicaIdentity
from crdt.incremental import IncrementalStructure
from crdt.index import OpIndex
from crdt.ops import MoveOp, VersionOp
from crdt.pending import PendingQueue, PendingUpdate
from crdt.projection import Projection
from crdt.rules import DEFAULT_RULES, ProjectionRules
from crdt.structure import Structure
from crdt.tree import FolderTree
from crdt.updates import UpdateInfo, UpdateLog
from crdt.view import Entry, EntryKind, VisibleTree, kid_key
from crdt.ydoc import YDoc

MAGIC = b"DRIFTCRDT1"
_DIGEST = 16


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_DIGEST, person=b"drift-crdt-save").digest()


def save(tree: FolderTree) -> bytes:
    """Everything needed to resume ``tree``: load it with :func:`load` and the same identity."""
    index = tree.index
    moves = list(index.moves.values())
    versions = list(index.versions.values())
    # Columns rather than rows: loading then builds ops with map() and dicts with zip().
    ops = {
        "moves": [[m.id for m in moves], [m.t for m in moves], [m.w for m in moves],
                  [m.node for m in moves], [m.parent for m in moves], [m.name for m in moves],
                  [m.prev for m in moves], [m.is_dir for m in moves], [m.seen for m in moves]],
        "versions": [[v.id for v in versions], [v.t for v in versions], [v.w for v in versions],
                     [v.node for v in versions], [v.manifest for v in versions],
                     [v.size for v in versions], [v.mtime_ms for v in versions],
                     [v.base for v in versions], [v.executable for v in versions]],
    }
    inc = tree.projection.inc
    s = inc.structure
    view = tree.view
    payload: dict[str, Any] = {
        "replica": tree.replica,
        "doc": tree.doc.encode_state(),
        "updates": [[u.replica, u.seq, u.client, u.clock, u.first_counter, u.n_ops,
                     [list(p) for p in u.seen], u.max_t, u.w] for u in tree.log.all()],
        "ops": ops,
        "pending": [[p.identity.device_id, p.identity.install_id, p.seq,
                     sorted(p.seen.items()), p.update] for p in tree.held],
        "projection": {
            "rules": list(astuple(tree.rules)),
            "void_ab": sorted(inc.void_ab),
            "void_c": sorted(inc.void_c),
            # Columns rather than rows: loading builds dicts with zip() at C speed.
            "undo": [[u[0] for u in inc.undo], [u[1] for u in inc.undo],
                     [int(u[2]) for u in inc.undo]],
            "structure": [list(s.parent), list(s.parent.values()), list(s.name.values()),
                          list(s.effective.values()), list(s.key.values())],
            "view": [[e.id, e.kind.value, e.parent, e.name, list(e.nodes),
                      e.version.version_id if e.version else None, list(e.copies), e.copy_of,
                      s.key[e.nodes[0]], kid_key(e, tree.rules)]
                     for e in view.entries.values() if e.id != "root"],
            "tried": [[eid, bucket, list(keys)] for (eid, bucket), keys in view.tried.items()],
        },
    }
    with paused_gc():
        body = msgpack.packb(payload, use_bin_type=True)
    return MAGIC + _digest(body) + body


def load(identity: ReplicaIdentity, data: bytes, *, rules: ProjectionRules = DEFAULT_RULES,
         use_projection: bool = True) -> FolderTree:
    """Rebuild a tree saved by :func:`save`; raises :class:`CorruptState` on any mismatch."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _DIGEST:
        raise CorruptState("not a saved folder tree")
    digest = data[len(MAGIC): len(MAGIC) + _DIGEST]
    body = data[len(MAGIC) + _DIGEST:]
    if _digest(body) != digest:
        raise CorruptState("saved folder tree is damaged (checksum mismatch)")
    try:
        with paused_gc():
            payload = msgpack.unpackb(body, raw=False, strict_map_key=False)
            return _restore(identity, payload, rules, use_projection)
    except CorruptState:
        raise
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptState(f"saved folder tree is inconsistent: {exc}") from None


def _restore(identity: ReplicaIdentity, payload: dict[str, Any], rules: ProjectionRules,
             use_projection: bool) -> FolderTree:
    if payload["replica"] != identity.replica:
        raise CorruptState("saved folder tree belongs to another replica")
    tree = FolderTree.__new__(FolderTree)
    tree.identity = identity
    tree.replica = identity.replica
    tree.client_id = identity.client_id
    tree.rules = rules
    log = UpdateLog()
    for replica, seq, client, clock, first, n, seen, max_t, w in payload["updates"]:
        log.record(UpdateInfo(replica, seq, client, clock, first, n,
                              tuple((r, s) for r, s in seen), max_t, w))
    log.client_owner.setdefault(identity.client_id, identity.replica)
    tree.log = log
    index = OpIndex()
    index.bulk_load(*_ops_from_columns(payload.pop("ops")))  # pop: free parts once used
    expected = {u.client: u.clock + u.n_ops for r in log.by_replica
                for u in log.by_replica[r][-1:]}
    n_ops = len(index.moves) + len(index.versions)

    def check(doc: YDoc) -> None:
        # Writing on a document that disagrees with the log would reuse (replica, counter) pairs
        # or Yjs clocks: refuse instead.
        if doc.state_vector() != expected or len(doc) != n_ops:
            raise CorruptState("document and update log disagree; restore from another replica")

    tree.doc = YDoc(identity.client_id, payload.pop("doc"), check)
    tree.index = index
    tree.held = PendingQueue()
    for device, install, seq, seen, update in payload["pending"]:
        tree.held.hold(PendingUpdate(ReplicaIdentity(device, install), seq, dict(seen), update))
    saved = payload["projection"]
    if use_projection and tuple(saved["rules"]) == astuple(rules):
        tree.projection = _warm_projection(index, rules, saved)
    else:
        tree.projection = Projection(index, rules)
    return tree


def _ops_from_columns(cols: dict[str, list[list[Any]]]) -> tuple[list[MoveOp], list[VersionOp]]:
    ids, ts, ws, nodes, parents, names, prevs, dirs, seens = cols["moves"]
    split = [i.rpartition(".") for i in ids]
    moves = list(map(MoveOp, ids, [p[0] for p in split], [int(p[2]) for p in split], ts, ws,
                     nodes, parents, names, map(tuple, prevs), dirs, map(tuple, seens)))
    ids, ts, ws, nodes, manifests, sizes, mtimes, bases = cols["versions"][:8]
    # A save made before versions carried the executable flag has no ninth column.
    flags = cols["versions"][8] if len(cols["versions"]) > 8 else [False] * len(ids)
    split = [i.rpartition(".") for i in ids]
    versions = list(map(VersionOp, ids, [p[0] for p in split], [int(p[2]) for p in split], ts,
                        ws, nodes, manifests, sizes, mtimes, map(tuple, bases), flags))
    return moves, versions


def _warm_projection(index: OpIndex, rules: ProjectionRules,
                     saved: dict[str, Any]) -> Projection:
    inc = IncrementalStructure(index, rules)
    inc.void_ab = set(saved["void_ab"])
    inc.void_c = set(saved["void_c"])
    moves = index.moves
    undo_ids, undo_prev, undo_applied = saved["undo"]
    inc.undo = [(mid, tuple(prev) if prev else None, bool(applied))  # type: ignore[misc]
                for mid, prev, applied in zip(undo_ids, undo_prev, undo_applied, strict=True)]
    inc.keys = [moves[mid].key for mid in undo_ids]
    nodes, parents, names, effective, keys = saved["structure"]
    s = Structure()
    s.parent = dict(zip(nodes, parents, strict=True))
    s.name = dict(zip(nodes, names, strict=True))
    s.effective = dict(zip(nodes, effective, strict=True))
    s.key = dict(zip(nodes, keys, strict=True))
    children = s.children
    named = s.named
    for node, parent, key in zip(nodes, parents, keys, strict=True):
        kids = children.get(parent)
        if kids is None:
            children[parent] = {node}
        else:
            kids.add(node)
        by_key = named.get(parent)
        if by_key is None:
            named[parent] = {key: {node}}
        else:
            same = by_key.get(key)
            if same is None:
                by_key[key] = {node}
            else:
                same.add(node)
    inc.structure = s
    view = VisibleTree()
    versions = index.versions
    entries = view.entries
    node_entry = view.node_entry
    rows: list[tuple[Entry, str, str]] = []
    for eid, kind, parent, name, nodes, vid, copies, copy_of, bucket, kk in saved["view"]:
        k = EntryKind(kind)
        e = entries[eid] = Entry(eid, k, parent, name, tuple(nodes),
                                 versions[vid] if vid else None, tuple(copies),
                                 copy_of)
        rows.append((e, bucket, kk))
        if k is not EntryKind.CONFLICTED_COPY:
            for n in nodes:
                node_entry[n] = eid
    view.restore_index(rows, saved["tried"], rules)
    projection = Projection.__new__(Projection)
    projection.index = index
    projection.rules = rules
    projection.inc = inc
    projection.view = view
    return projection
