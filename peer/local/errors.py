"""Errors of the local layer beyond the folder's own: the index and the watcher.

They share ``LocalError`` with ``peer.fs`` so the engine catches one base for everything local.
"""

from __future__ import annotations

from peer.fs.errors import LocalError


class IndexDbError(LocalError):
    """The local index database cannot be used as it is."""


class IndexTooNewError(IndexDbError):
    """The index was written by a newer driftsync; opening it would risk corrupting it."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"the local index has schema version {found}, but this driftsync knows up to "
            f"{supported}: upgrade driftsync, or remove the index to rebuild it by a rescan"
        )
        self.found = found
        self.supported = supported


__all__ = ["IndexDbError", "IndexTooNewError", "LocalError"]
