"""What the visible tree is made of: entries and their kinds."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from crdt.ops import ROOT, VersionOp

ROOT_ENTRY = ROOT


class EntryKind(StrEnum):
    DIR = "dir"
    FILE = "file"
    CONFLICTED_COPY = "conflicted_copy"


# A file version as the visible tree shows it is its version op: ``version_id``, ``manifest``
# (the manifest or single block id), ``size``, ``mtime_ms`` and ``author`` (plus ``t``, ``w``,
# ``base``). Sharing the op object keeps 100k-file trees a hundred thousand objects lighter.
FileVersion = VersionOp


@dataclass(frozen=True, slots=True)
class Entry:
    """A visible entry. ``id`` is its primary node (for copies ``node~version``)."""

    id: str
    kind: EntryKind
    parent: str
    name: str
    nodes: tuple[str, ...]
    version: FileVersion | None = None
    copies: tuple[str, ...] = ()  # entry ids of this file's conflicted copies
    copy_of: str | None = None  # for a conflicted copy: the file entry it belongs to

    @property
    def is_dir(self) -> bool:
        return self.kind is EntryKind.DIR
