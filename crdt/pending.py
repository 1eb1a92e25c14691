"""Updates that arrived before their causal past: held outside the document until it arrives."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from crdt.identity import ReplicaIdentity
from crdt.updates import VersionVector

MAX_PENDING = 100_000


@dataclass(frozen=True, slots=True)
class PendingUpdate:
    identity: ReplicaIdentity
    seq: int
    seen: VersionVector
    update: bytes


class PendingQueue:
    """Held updates by replica and seq; only a replica's next seq can ever become ready."""

    def __init__(self) -> None:
        self._by_replica: dict[str, dict[int, PendingUpdate]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[PendingUpdate]:
        for replica in sorted(self._by_replica):
            held = self._by_replica[replica]
            for seq in sorted(held):
                yield held[seq]

    def keys(self) -> list[tuple[str, int]]:
        return [(p.identity.replica, p.seq) for p in self]

    def hold(self, p: PendingUpdate) -> bool:
        """Keep ``p``; False when the queue is full."""
        held = self._by_replica.setdefault(p.identity.replica, {})
        if p.seq not in held:
            if self._count >= MAX_PENDING:
                return False
            self._count += 1
        held[p.seq] = p
        return True

    def discard(self, replica: str, seq: int) -> None:
        held = self._by_replica.get(replica)
        if held is not None and held.pop(seq, None) is not None:
            self._count -= 1
            if not held:
                del self._by_replica[replica]

    def take_ready(self, have: Callable[[str], int]) -> PendingUpdate | None:
        """Remove and return one held update whose causal past is applied (``have`` says how far
        each replica is), dropping held updates that are already applied."""
        for replica in sorted(self._by_replica):
            held = self._by_replica[replica]
            done = have(replica)
            for seq in [s for s in held if s <= done]:
                self.discard(replica, seq)
            p = held.get(done + 1)
            if p is not None and all(s <= have(r) for r, s in p.seen.items()):
                self.discard(replica, p.seq)
                return p
        return None
