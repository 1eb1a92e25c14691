"""The device's configuration (``config.toml`` in its home): relay, limits, and its shares."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peer.device.toml import dumps, write_atomic
from peer.errors import ConfigError


@dataclass(slots=True)
class ShareConfig:
    share_id: str
    path: str
    name: str = ""
    paused: bool = False


@dataclass(slots=True)
class DeviceConfig:
    device_name: str = "device"
    relay_url: str = ""
    upload_limit_kib_s: int = 0  # 0: unlimited
    download_limit_kib_s: int = 0
    rescan_interval_s: int = 60
    watch_delay_ms: int = 50
    mass_delete_fraction: float = 0.5  # deleting more than this share of files pauses the share
    lan_enabled: bool = True  # sync directly with devices on the same network
    lan_port: int = 22070  # TCP port for LAN peers (another is picked if it is taken)
    lan_addresses: list[str] = field(default_factory=list)  # empty: every non-loopback address
    lan_peers: list[str] = field(default_factory=list)  # "host:port" where multicast does not pass
    shares: dict[str, ShareConfig] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> DeviceConfig:
        if not path.exists():
            return cls()
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"cannot read {path}: {exc}", hint="fix the file by hand or remove it"
            ) from exc
        config = cls()
        for key in (
            "device_name",
            "relay_url",
            "upload_limit_kib_s",
            "download_limit_kib_s",
            "rescan_interval_s",
            "watch_delay_ms",
            "mass_delete_fraction",
            "lan_enabled",
            "lan_port",
        ):
            if key in raw:
                expected = type(getattr(config, key))
                value = raw[key]
                if expected is float and isinstance(value, int):
                    value = float(value)
                if not isinstance(value, expected):
                    raise ConfigError(f"{path}: {key} must be a {expected.__name__}")
                setattr(config, key, value)
        for key in ("lan_addresses", "lan_peers"):
            value = raw.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{path}: {key} must be a list of strings")
            setattr(config, key, list(value))
        if not 0 <= config.lan_port <= 65535:
            raise ConfigError(f"{path}: lan_port must be a TCP port (0-65535)")
        for peer in config.lan_peers:
            host, _, port = peer.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) <= 65535:
                raise ConfigError(
                    f"{path}: lan_peers entry {peer!r} is not host:port",
                    hint='write it like "192.168.1.20:22070"',
                )
        for share_id, table in raw.get("shares", {}).items():
            if not isinstance(table, dict) or not isinstance(table.get("path"), str):
                raise ConfigError(f"{path}: [shares.{share_id}] needs a path")
            config.shares[share_id] = ShareConfig(
                share_id, table["path"], str(table.get("name", "")), bool(table.get("paused"))
            )
        return config

    def save(self, path: Path) -> None:
        doc: dict[str, Any] = {
            "device_name": self.device_name,
            "relay_url": self.relay_url,
            "upload_limit_kib_s": self.upload_limit_kib_s,
            "download_limit_kib_s": self.download_limit_kib_s,
            "rescan_interval_s": self.rescan_interval_s,
            "watch_delay_ms": self.watch_delay_ms,
            "mass_delete_fraction": self.mass_delete_fraction,
            "lan_enabled": self.lan_enabled,
            "lan_port": self.lan_port,
            "lan_addresses": self.lan_addresses,
            "lan_peers": self.lan_peers,
            "shares": {
                s.share_id: {"path": s.path, "name": s.name, "paused": s.paused}
                for s in self.shares.values()
            },
        }
        write_atomic(path, dumps(doc))

    def share_by_name(self, name_or_id: str) -> ShareConfig | None:
        for share in self.shares.values():
            if name_or_id in (share.share_id, share.name) or (
                share.share_id.startswith(name_or_id.lower()) and len(name_or_id) >= 6
            ):
                return share
        return None
