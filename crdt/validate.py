"""Strict validation of a remote update, before anything touches the document.

Every check is a pure function of the update, its declared ``seen`` vector and the ops inside that
vector, so every honest replica reaches the same verdict on the same update.
"""

from __future__ import annotations

import re

from crdt.errors import UpdateRefused
from crdt.index import OpIndex
from crdt.ops import ROOT, TRASH, MalformedOp, MoveOp, Op, VersionOp, decode_op, op_id
from crdt.updates import UpdateLog, VersionVector
from crdt.ydoc import ROOT_MAP
from crdt.yjs_codec import CodecError, decode_update

_REPLICA_RE = re.compile(r"[a-z2-7]{10}")
MAX_OPS_PER_UPDATE = 1_000_000


def check_seen(seen: object) -> VersionVector:
    if not isinstance(seen, dict):
        raise UpdateRefused("seen must be a mapping of replica to update seq")
    out: VersionVector = {}
    for r, s in seen.items():
        if not isinstance(r, str) or not _REPLICA_RE.fullmatch(r):
            raise UpdateRefused(f"seen names an invalid replica {r!r}")
        if type(s) is not int or s < 0:
            raise UpdateRefused(f"seen[{r}] is not a non-negative integer")
        if s:
            out[r] = s
    return out


class _Scope:
    """Ops an update may reference: inside its seen vector, or earlier in the update itself."""

    def __init__(self, index: OpIndex, log: UpdateLog, seen: VersionVector) -> None:
        self.index = index
        self.log = log
        self.seen = seen
        self.local: dict[str, Op] = {}

    def get(self, ref: str) -> Op | None:
        op = self.local.get(ref)
        if op is not None:
            return op
        op = self.index.get(ref)
        if op is None:
            return None
        seq = self.log.seq_of(ref)
        return op if seq is not None and seq <= self.seen.get(op.replica, 0) else None

    def require(self, ref: str, what: str) -> Op:
        op = self.get(ref)
        if op is None:
            raise UpdateRefused(f"{what} {ref} is not among the ops the update declares it saw")
        return op


def _check_move(op: MoveOp, scope: _Scope) -> list[Op]:
    refs: list[Op] = []
    if op.is_create:
        if op.prev or op.seen:
            raise UpdateRefused(f"{op.id}: a create lists no prior moves or versions")
        if op.parent == TRASH:
            raise UpdateRefused(f"{op.id}: a create cannot go to the trash")
    else:
        create = scope.require(op.node, f"{op.id}: node")
        if not isinstance(create, MoveOp) or not create.is_create:
            raise UpdateRefused(f"{op.id}: node {op.node} is not a created node")
        refs.append(create)
        if not op.prev:
            raise UpdateRefused(f"{op.id}: a move must list the moves it saw")
        for ref in op.prev:
            prev = scope.require(ref, f"{op.id}: prev")
            if not isinstance(prev, MoveOp) or prev.node != op.node:
                raise UpdateRefused(f"{op.id}: prev {ref} is not a move of the same node")
            refs.append(prev)
        for ref in op.seen:
            seen = scope.require(ref, f"{op.id}: seen version")
            if not isinstance(seen, VersionOp) or seen.node != op.node:
                raise UpdateRefused(f"{op.id}: seen {ref} is not a version of the same node")
            refs.append(seen)
    if op.parent not in (ROOT, TRASH):
        if op.parent == op.node:
            raise UpdateRefused(f"{op.id}: a node cannot be its own parent")
        parent = scope.require(op.parent, f"{op.id}: parent")
        if not isinstance(parent, MoveOp) or not parent.is_create or not parent.is_dir:
            raise UpdateRefused(f"{op.id}: parent {op.parent} is not a folder")
        refs.append(parent)
    return refs


def _check_version(op: VersionOp, scope: _Scope) -> list[Op]:
    create = scope.require(op.node, f"{op.id}: node")
    if not isinstance(create, MoveOp) or not create.is_create or create.is_dir:
        raise UpdateRefused(f"{op.id}: node {op.node} is not a file")
    refs: list[Op] = [create]
    for ref in op.base:
        base = scope.require(ref, f"{op.id}: base")
        if not isinstance(base, VersionOp) or base.node != op.node:
            raise UpdateRefused(f"{op.id}: base {ref} is not a version of the same file")
        refs.append(base)
    return refs


def validate_update(*, replica: str, client_id: int, seq: int, seen: VersionVector,
                    update: bytes, index: OpIndex, log: UpdateLog) -> list[Op]:
    """The ops of ``update`` if it passes every rule; otherwise :class:`UpdateRefused`.

    The caller has already checked causal readiness: ``seq`` is the replica's next update and every
    update in ``seen`` is applied.
    """
    if seen.get(replica, 0) != seq - 1:
        raise UpdateRefused(f"seen must include the author's own {seq - 1} earlier updates")
    owner = log.client_owner.get(client_id)
    if owner is not None and owner != replica:
        raise UpdateRefused(f"Yjs client id {client_id} already belongs to replica {owner}")
    try:
        runs = decode_update(update, ROOT_MAP)
    except CodecError as exc:
        raise UpdateRefused(f"not a well-formed update: {exc}") from None
    if len(runs) != 1:
        raise UpdateRefused("an update must hold the ops of exactly one client")
    run = runs[0]
    if run.client != client_id:
        raise UpdateRefused(f"written under Yjs client id {run.client}, not the signer's")
    if run.clock != log.next_clock(replica):
        raise UpdateRefused(
            f"clock {run.clock} does not continue the device's previous update "
            f"(expected {log.next_clock(replica)})")
    if len(run.entries) > MAX_OPS_PER_UPDATE:
        raise UpdateRefused("too many ops in one update")
    scope = _Scope(index, log, seen)
    bound = log.max_t_within(seen) + len(run.entries)
    counter = log.next_counter(replica)
    ops: list[Op] = []
    for i, (key, text) in enumerate(run.entries):
        expected = op_id(replica, counter + i)
        if key != expected:
            raise UpdateRefused(f"op key {key!r} is not the signer's next op id {expected}")
        if index.get(key) is not None:
            raise UpdateRefused(f"op key {key} already exists")
        try:
            op = decode_op(key, text)
        except MalformedOp as exc:
            raise UpdateRefused(f"malformed op {key}: {exc}") from None
        refs = _check_move(op, scope) if isinstance(op, MoveOp) else _check_version(op, scope)
        floor = max((r.t for r in refs), default=0)
        if op.t <= floor:
            raise UpdateRefused(f"{key}: Lamport time {op.t} is not after the ops it refers to")
        if op.t > bound:
            raise UpdateRefused(f"{key}: Lamport time {op.t} exceeds the bound {bound}")
        scope.local[key] = op
        ops.append(op)
    return ops
