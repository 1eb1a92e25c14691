"""Where a device keeps its identity, config and per-share state: never inside a synced folder.

The default is the platform's user data directory (``platformdirs``); ``--home DIR`` or the
``DRIFT_HOME`` environment variable override it, so several devices can live on one machine (the
tests and ``drift demo`` do exactly that).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "driftsync"


def resolve_home(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    if explicit:
        return Path(explicit).expanduser().resolve()
    if env.get("DRIFT_HOME"):
        return Path(env["DRIFT_HOME"]).expanduser().resolve()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True, slots=True)
class Home:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def device_key(self) -> Path:
        return self.root / "device.key"

    @property
    def device_cert(self) -> Path:
        return self.root / "device.cert"

    @property
    def user_key(self) -> Path:
        return self.root / "user.key"

    @property
    def control(self) -> Path:
        """Written by `drift pause/resume`, read by the running daemon."""
        return self.root / "control.toml"

    def share_dir(self, share_id: str) -> Path:
        return self.root / "shares" / share_id

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
