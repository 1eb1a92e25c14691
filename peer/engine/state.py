"""The words a share's state is told in (one set, everywhere: status, logs, JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ShareState(StrEnum):
    IDLE = "idle"  # in sync as far as this device knows
    SCANNING = "scanning"
    SYNCING = "syncing"
    OFFLINE = "offline"  # the relay cannot be reached; local changes queue
    PAUSED = "paused"  # by the user, or by a guard (see reason)
    ERROR = "error"  # cannot sync until the reason is fixed


@dataclass
class ShareStatus:
    share_id: str
    path: str
    state: ShareState = ShareState.IDLE
    reason: str = ""
    files: int = 0
    dirs: int = 0
    bytes: int = 0
    pending_up: int = 0  # envelopes not yet acknowledged by the relay
    pending_down: int = 0  # files the tree has that this disk does not (yet)
    last_sync_ms: int = 0
    peers: list[str] = field(default_factory=list)  # other devices writing to the share
    conflicts: list[str] = field(default_factory=list)
    not_synced: dict[str, str] = field(default_factory=dict)  # path → why
    file_errors: int = 0  # of ``not_synced``, the files that failed (not merely waiting)
