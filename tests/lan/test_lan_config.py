"""The LAN settings in a device's config.toml: defaults, a round trip, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from peer.device.config import DeviceConfig
from peer.errors import ConfigError


def test_lan_is_on_by_default_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config = DeviceConfig()
    assert config.lan_enabled is True
    assert config.lan_addresses == []  # every non-loopback address
    config.lan_peers = ["192.168.1.20:22070", "[fe80::1]:22070"]
    config.lan_addresses = ["192.168.1.10"]
    config.save(path)
    again = DeviceConfig.load(path)
    assert again.lan_enabled is True
    assert again.lan_port == 22070
    assert again.lan_peers == config.lan_peers
    assert again.lan_addresses == ["192.168.1.10"]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('lan_peers = ["192.168.1.20"]', "not host:port"),
        ('lan_peers = ["host:99999"]', "not host:port"),
        ('lan_peers = "192.168.1.20:22070"', "must be a list of strings"),
        ("lan_addresses = [1]", "must be a list of strings"),
        ("lan_port = 70000", "lan_port must be a TCP port"),
        ('lan_enabled = "yes"', "lan_enabled must be a bool"),
    ],
)
def test_bad_lan_settings_are_refused_with_a_reason(tmp_path: Path, line: str, says: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=says):
        DeviceConfig.load(path)
