"""Building the ops of one local transaction."""

from __future__ import annotations

from dataclasses import dataclass, field

from crdt.errors import InvalidOperation
from crdt.index import OpIndex
from crdt.ops import MoveOp, Op, VersionOp, op_id
from crdt.results import FileContent


@dataclass
class OpBatch:
    """Ops of one local transaction under construction: fresh counters, increasing Lamport times."""

    replica: str
    first_counter: int
    first_t: int
    index: OpIndex
    now_ms: int
    ops: list[Op] = field(default_factory=list)

    def _next(self) -> tuple[str, int, int]:
        counter = self.first_counter + len(self.ops)
        return op_id(self.replica, counter), counter, self.first_t + len(self.ops)

    def move(self, node: str | None, parent: str, name: str, *, is_dir: bool | None = None,
             seen: tuple[str, ...] = ()) -> str:
        oid, counter, t = self._next()
        prev: tuple[str, ...] = ()
        if node is None:
            node = oid
        else:
            prev = tuple(self.index.move_heads(node))
        self.ops.append(MoveOp(oid, self.replica, counter, t, self.now_ms, node, parent, name,
                               prev, is_dir, seen))
        return oid

    def version(self, node: str, content: FileContent, base: tuple[str, ...]) -> str:
        oid, counter, t = self._next()
        self.ops.append(VersionOp(oid, self.replica, counter, t, self.now_ms, node,
                                  bytes(content.manifest), content.size, content.mtime_ms,
                                  tuple(sorted(base)), content.executable))
        return oid


def split_path(path: str) -> tuple[str, str]:
    """``"a/b/c"`` -> ``("a/b", "c")``; the root itself cannot be split."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise InvalidOperation("the share's root folder cannot be changed")
    return "/".join(parts[:-1]), parts[-1]


def check_content(content: FileContent) -> None:
    if not 1 <= len(content.manifest) <= 64:
        raise InvalidOperation("a manifest id must be 1 to 64 bytes")
    if not 0 <= content.size < 2**53 or not 0 <= content.mtime_ms < 2**53:
        raise InvalidOperation("size and mtime_ms must be non-negative integers below 2**53")
