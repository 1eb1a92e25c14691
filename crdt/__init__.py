"""The replicated folder tree of a share, on pycrdt: pure, no I/O, no clock of its own.

Start with :class:`crdt.tree.FolderTree`; see docs/crdt.md for the model and the rules.
"""

from crdt.errors import (
    AlreadyExists,
    CorruptState,
    CrdtError,
    DocumentError,
    InvalidName,
    InvalidOperation,
    LocalOperationError,
    NotFound,
    UpdateRefused,
)
from crdt.events import Appeared, ChangeEvent, ContentChanged, Disappeared, Moved, Renamed
from crdt.identity import ReplicaIdentity, client_id_for, replica_for
from crdt.persist import load, save
from crdt.rules import DEFAULT_RULES, ProjectionRules
from crdt.tree import (
    FileContent,
    FolderTree,
    LocalUpdate,
    NodeHistory,
    ReceiveResult,
    ReceiveStatus,
    Refusal,
)
from crdt.updates import VersionVector
from crdt.view import Entry, EntryKind, FileVersion, VisibleTree

__all__ = [
    "DEFAULT_RULES",
    "AlreadyExists",
    "Appeared",
    "ChangeEvent",
    "ContentChanged",
    "CorruptState",
    "CrdtError",
    "Disappeared",
    "DocumentError",
    "Entry",
    "EntryKind",
    "FileContent",
    "FileVersion",
    "FolderTree",
    "InvalidName",
    "InvalidOperation",
    "LocalOperationError",
    "LocalUpdate",
    "Moved",
    "NodeHistory",
    "NotFound",
    "ProjectionRules",
    "ReceiveResult",
    "ReceiveStatus",
    "Refusal",
    "Renamed",
    "ReplicaIdentity",
    "UpdateRefused",
    "VersionVector",
    "VisibleTree",
    "client_id_for",
    "load",
    "replica_for",
    "save",
]
