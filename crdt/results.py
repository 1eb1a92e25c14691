"""Plain values the folder tree takes and returns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from crdt.events import ChangeEvent
from crdt.updates import VersionVector
from crdt.view import FileVersion


@dataclass(frozen=True, slots=True)
class FileContent:
    """What a version records: the manifest (or single block) id, size, mtime in ms and
    whether the file is executable."""

    manifest: bytes
    size: int
    mtime_ms: int
    executable: bool = False


@dataclass(frozen=True, slots=True)
class LocalUpdate:
    """One local transaction: publish ``update`` as the replica's update number ``seq``."""

    replica: str
    seq: int
    update: bytes
    seen: VersionVector
    events: tuple[ChangeEvent, ...] = ()


class ReceiveStatus(StrEnum):
    APPLIED = "applied"
    PENDING = "pending"  # waits for the updates in its seen vector
    DUPLICATE = "duplicate"  # already applied (identical bytes)


@dataclass(frozen=True, slots=True)
class Refusal:
    replica: str
    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReceiveResult:
    status: ReceiveStatus
    applied: tuple[tuple[str, int], ...] = ()  # this update and pending ones it unblocked
    events: tuple[ChangeEvent, ...] = ()
    refused: tuple[Refusal, ...] = ()  # unblocked pending updates that failed validation


@dataclass(frozen=True, slots=True)
class MoveRecord:
    op_id: str
    author: str
    t: int
    w: int
    parent: str
    name: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class VersionRecord:
    version: FileVersion
    t: int
    w: int
    base: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeHistory:
    node: str
    moves: tuple[MoveRecord, ...]
    versions: tuple[VersionRecord, ...]
