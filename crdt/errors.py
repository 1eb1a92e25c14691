"""One error hierarchy for the replicated folder tree.

``LocalOperationError`` means the caller asked for something the visible tree does not allow (a path
that does not exist, a name already taken); ``UpdateRefused`` means a remote update broke a rule and
was not applied — the document is untouched in both cases.
"""

from __future__ import annotations


class CrdtError(Exception):
    """Base of every error raised by :mod:`crdt`."""


class LocalOperationError(CrdtError):
    """A local operation cannot be carried out against the current visible tree."""


class NotFound(LocalOperationError):
    def __init__(self, path: str) -> None:
        super().__init__(f"no such file or folder: {path!r}")
        self.path = path


class AlreadyExists(LocalOperationError):
    def __init__(self, path: str) -> None:
        super().__init__(f"a file or folder with this name already exists: {path!r}")
        self.path = path


class InvalidName(LocalOperationError):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"invalid name {name!r}: {why}")
        self.name = name
        self.why = why


class InvalidOperation(LocalOperationError):
    """E.g. moving a folder into itself, editing a folder, restoring onto a file."""


class UpdateRefused(CrdtError):
    """A remote update broke a validation rule; nothing of it was applied."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"update refused: {reason}")
        self.reason = reason


class CorruptState(CrdtError):
    """Persisted state that cannot be loaded (truncated, from another share, inconsistent)."""


class DocumentError(CrdtError):
    """pycrdt itself failed (it raises ``PanicException``, a ``BaseException``)."""
