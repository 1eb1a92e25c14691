"""The sync engine: one task per share reconciles the folder, the folder tree and the relay."""

from peer.engine.node import DeviceNode, Seams
from peer.engine.state import ShareState, ShareStatus
from peer.engine.sync import PassReport, ShareSync, SyncOptions

__all__ = [
    "DeviceNode",
    "PassReport",
    "Seams",
    "ShareState",
    "ShareStatus",
    "ShareSync",
    "SyncOptions",
]
