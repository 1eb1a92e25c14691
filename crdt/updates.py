"""Bookkeeping of updates: which (replica, seq) are applied, their clocks, ops and seen vectors."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from crdt.ops import Op, op_id, parse_op_id

VersionVector = dict[str, int]


@dataclass(frozen=True, slots=True)
class UpdateInfo:
    replica: str
    seq: int
    client: int
    clock: int  # first Yjs clock of the update
    first_counter: int  # first op counter (ops are counters first_counter .. +n_ops-1)
    n_ops: int
    seen: tuple[tuple[str, int], ...]  # sorted (replica, seq) the author had applied
    max_t: int
    w: int  # the author's wall clock (max over its ops), for "as of a time"

    @property
    def op_ids(self) -> list[str]:
        return [op_id(self.replica, self.first_counter + i) for i in range(self.n_ops)]

    @property
    def seen_vector(self) -> VersionVector:
        return dict(self.seen)


class UpdateLog:
    def __init__(self) -> None:
        self.by_replica: dict[str, list[UpdateInfo]] = {}
        self._first_counters: dict[str, list[int]] = {}
        self._prefix_max_t: dict[str, list[int]] = {}
        self.client_owner: dict[int, str] = {}

    def record(self, info: UpdateInfo) -> None:
        updates = self.by_replica.setdefault(info.replica, [])
        if info.seq != len(updates) + 1:
            raise ValueError("updates of a replica must be recorded in sequence")
        updates.append(info)
        self._first_counters.setdefault(info.replica, []).append(info.first_counter)
        prefix = self._prefix_max_t.setdefault(info.replica, [])
        prefix.append(max(info.max_t, prefix[-1] if prefix else 0))
        self.client_owner.setdefault(info.client, info.replica)

    def have(self, replica: str) -> int:
        return len(self.by_replica.get(replica, ()))

    def vector(self) -> VersionVector:
        return {r: len(u) for r, u in sorted(self.by_replica.items()) if u}

    def get(self, replica: str, seq: int) -> UpdateInfo | None:
        updates = self.by_replica.get(replica, [])
        return updates[seq - 1] if 1 <= seq <= len(updates) else None

    def next_counter(self, replica: str) -> int:
        updates = self.by_replica.get(replica)
        if not updates:
            return 1
        last = updates[-1]
        return last.first_counter + last.n_ops

    def next_clock(self, replica: str) -> int:
        updates = self.by_replica.get(replica)
        if not updates:
            return 0
        last = updates[-1]
        return last.clock + last.n_ops

    def seq_of(self, op: str) -> int | None:
        """The update seq that carried op id ``op`` (None if no applied update did)."""
        replica, counter = parse_op_id(op)
        firsts = self._first_counters.get(replica)
        if not firsts:
            return None
        i = bisect.bisect_right(firsts, counter) - 1
        if i < 0:
            return None
        info = self.by_replica[replica][i]
        return i + 1 if counter < info.first_counter + info.n_ops else None

    def max_t_within(self, vector: VersionVector) -> int:
        """Max Lamport time of the ops inside ``vector`` (a pure function of the vector)."""
        best = 0
        for replica, seq in vector.items():
            prefix = self._prefix_max_t.get(replica)
            if prefix and seq > 0:
                best = max(best, prefix[min(seq, len(prefix)) - 1])
        return best

    def all(self) -> list[UpdateInfo]:
        return [u for r in sorted(self.by_replica) for u in self.by_replica[r]]


def info_for(replica: str, seq: int, client: int, clock: int, ops: list[Op],
             seen: VersionVector) -> UpdateInfo:
    return UpdateInfo(
        replica=replica, seq=seq, client=client, clock=clock,
        first_counter=ops[0].counter, n_ops=len(ops),
        seen=tuple(sorted((r, s) for r, s in seen.items() if s > 0)),
        max_t=max(o.t for o in ops), w=max(o.w for o in ops),
    )
