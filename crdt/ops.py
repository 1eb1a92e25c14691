"""Operation records: the immutable values stored under op-id keys in the share's root map.

An op id is ``"<replica>.<counter>"``. A node id is the id of the move op that created it. Records
are compact JSON arrays (positional, so a one-file update stays small)::

    move:    ["m", t, w, node, parent, name, prev, dir, seen]
    version: ["v", t, w, node, manifest_hex, size, mtime_ms, base]
             ["v", t, w, node, manifest_hex, size, mtime_ms, base, 1]   (an executable file)

``t`` is the Lamport time, ``w`` the author's wall clock in ms (given by the caller, used only for
"as of a time"), ``dir`` is 1/0 on a create and null otherwise, ``seen`` lists the version heads a
delete (a move to TRASH) had seen. The trailing ``1`` of a version marks an executable file; it is
left out otherwise, so every record written before the flag existed keeps its one spelling. Ops
are totally ordered by ``(t, replica, counter)``.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from crdt.errors import InvalidName

ROOT = "root"
TRASH = "trash"
MAX_NAME_BYTES = 255
MAX_INT = 2**53 - 1
MAX_MANIFEST_BYTES = 64
_REPLICA_RE = re.compile(r"[a-z2-7]{10}")
_MANIFEST_RE = re.compile(r"(?:[0-9a-f]{2}){1,64}")

OrderKey = tuple[int, str, int]


def op_id(replica: str, counter: int) -> str:
    return f"{replica}.{counter}"


@functools.lru_cache(maxsize=16384)  # every reference in every op is parsed (~5 per op)
def parse_op_id(value: str) -> tuple[str, int]:
    """Split an op id, refusing anything that is not ``<replica>.<positive counter>``."""
    replica, dot, counter = value.partition(".")
    if (
        not dot
        or not _REPLICA_RE.fullmatch(replica)
        or not counter.isdigit()
        or not counter.isascii()
        or counter.startswith("0")
        or len(counter) > 16
    ):
        raise ValueError(f"not an op id: {value!r}")
    return replica, int(counter)


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a file or folder name, or None when it can."""
    if not isinstance(name, str):
        return "not a string"
    if not name:
        return "empty"
    if name in (".", ".."):
        return "'.' and '..' are reserved"
    if "/" in name or "\x00" in name:
        return "contains '/' or NUL"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "not valid Unicode text"
    if size > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes in UTF-8"
    return None


def check_name(name: str) -> str:
    problem = name_problem(name)
    if problem is not None:
        raise InvalidName(name, problem)
    return name


@dataclass(frozen=True, slots=True)
class MoveOp:
    id: str
    replica: str
    counter: int
    t: int
    w: int
    node: str
    parent: str
    name: str
    prev: tuple[str, ...]
    is_dir: bool | None
    seen: tuple[str, ...]

    @property
    def key(self) -> OrderKey:
        return (self.t, self.replica, self.counter)

    @property
    def is_create(self) -> bool:
        return self.node == self.id

    @property
    def is_delete(self) -> bool:
        return self.parent == TRASH

    def record(self) -> list[Any]:
        dir_flag = None if self.is_dir is None else int(self.is_dir)
        return ["m", self.t, self.w, self.node, self.parent, self.name, list(self.prev), dir_flag,
                list(self.seen)]


@dataclass(frozen=True, slots=True)
class VersionOp:
    id: str
    replica: str
    counter: int
    t: int
    w: int
    node: str
    manifest: bytes
    size: int
    mtime_ms: int
    base: tuple[str, ...]
    executable: bool = False

    @property
    def key(self) -> OrderKey:
        return (self.t, self.replica, self.counter)

    @property
    def version_id(self) -> str:
        return self.id

    @property
    def author(self) -> str:
        """The replica that wrote this version."""
        return self.replica

    def record(self) -> list[Any]:
        record = ["v", self.t, self.w, self.node, self.manifest.hex(), self.size, self.mtime_ms,
                  list(self.base)]
        return [*record, 1] if self.executable else record


Op = MoveOp | VersionOp


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""``json.dumps`` with these options builds a new encoder at every call; every op decoded is
encoded again (the canonical check), so one is kept (encoders hold no state between calls)."""


def encode_op(op: Op) -> str:
    return _ENCODER.encode(op.record())


class MalformedOp(ValueError):
    """A record that does not follow the op format (the reason is the message)."""


def _int(value: object, what: str, low: int = 0) -> int:
    # bool is an int in Python; JSON true must not pass as 1.
    if type(value) is not int or not low <= value <= MAX_INT:
        raise MalformedOp(f"{what} must be an integer in [{low}, 2**53)")
    return value


def _ids(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > 64:
        raise MalformedOp(f"{what} must be a list of at most 64 op ids")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise MalformedOp(f"{what} holds a non-string")
        try:
            parse_op_id(item)
        except ValueError as exc:
            raise MalformedOp(f"{what}: {exc}") from None
        out.append(item)
    if len(set(out)) != len(out):
        raise MalformedOp(f"{what} repeats an id")
    return tuple(out)


def _node(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise MalformedOp(f"{what} must be a string")
    try:
        parse_op_id(value)
    except ValueError as exc:
        raise MalformedOp(f"{what}: {exc}") from None
    return value


def _canonical(text: str, op: Op) -> Op:
    # One op, one spelling: refuses floats, spaces, escapes and key reordering that would make
    # two replicas hash or re-encode the same op differently.
    if encode_op(op) != text:
        raise MalformedOp("record is not in canonical form")
    return op


def decode_op(key: str, text: str) -> Op:
    """Parse and type-check one record; raises :class:`MalformedOp` with the reason."""
    try:
        replica, counter = parse_op_id(key)
    except ValueError as exc:
        raise MalformedOp(str(exc)) from None
    try:
        rec = json.loads(text)
    except (ValueError, RecursionError):
        raise MalformedOp("record is not JSON") from None
    if not isinstance(rec, list) or not rec:
        raise MalformedOp("record is not a JSON array")
    kind = rec[0]
    if kind == "m":
        if len(rec) != 9:
            raise MalformedOp("move record must have 9 fields")
        _, t, w, node, parent, name, prev, dir_flag, seen = rec
        node = _node(node, "node")
        if not isinstance(parent, str):
            raise MalformedOp("parent must be a string")
        if parent not in (ROOT, TRASH):
            _node(parent, "parent")
        problem = name_problem(name)
        if problem is not None:
            raise MalformedOp(f"name {name!r}: {problem}")
        is_create = node == key
        if is_create:
            if dir_flag not in (0, 1) or type(dir_flag) is not int:
                raise MalformedOp("a create must say dir 0 or 1")
            is_dir: bool | None = bool(dir_flag)
        else:
            if dir_flag is not None:
                raise MalformedOp("only a create may carry a dir flag")
            is_dir = None
        seen_ids = _ids(seen, "seen")
        if seen_ids and parent != TRASH:
            raise MalformedOp("only a delete may list seen versions")
        return _canonical(text, MoveOp(key, replica, counter, _int(t, "t", 1), _int(w, "w"), node,
                                       parent, name, _ids(prev, "prev"), is_dir, seen_ids))
    if kind == "v":
        if len(rec) not in (8, 9):
            raise MalformedOp("version record must have 8 fields, or 9 for an executable file")
        _, t, w, node, manifest, size, mtime_ms, base = rec[:8]
        if len(rec) == 9 and (type(rec[8]) is not int or rec[8] != 1):
            raise MalformedOp("the executable flag must be 1 (and absent otherwise)")
        if not isinstance(manifest, str) or not _MANIFEST_RE.fullmatch(manifest):
            raise MalformedOp("manifest must be lowercase hex of 1..64 bytes")
        return _canonical(text, VersionOp(key, replica, counter, _int(t, "t", 1), _int(w, "w"),
                         _node(node, "node"), bytes.fromhex(manifest), _int(size, "size"),
                         _int(mtime_ms, "mtime_ms"), _ids(base, "base"), len(rec) == 9))
    raise MalformedOp(f"unknown record kind {kind!r}")

