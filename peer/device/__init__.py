"""The device on disk: its home (identity, config) and each share's state database."""

from peer.device.config import DeviceConfig, ShareConfig
from peer.device.home import Home, resolve_home
from peer.device.store import FileError, ShareStore, StoredUpdate, SyncedFile

__all__ = [
    "DeviceConfig",
    "FileError",
    "Home",
    "ShareConfig",
    "ShareStore",
    "StoredUpdate",
    "SyncedFile",
    "resolve_home",
]
