"""What ``drift status`` shows of the LAN: the running daemon writes it, the command reads it.

``drift status`` is another process than the daemon, so the daemon's ``DeviceLan`` writes its
peers (name, address, shares, bytes sent and received through each) to ``lan-status.json`` in the
device's home every ``WRITE_EVERY_S`` and removes it when it stops. A file older than
``STALE_AFTER_MS`` belongs to a daemon that died: it is ignored, so status never shows peers
that are long gone.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from peer.device.home import Home
from peer.device.toml import write_atomic
from protocol import ids

FILE_NAME = "lan-status.json"
WRITE_EVERY_S = 1.0
STALE_AFTER_MS = 15_000


@dataclass(frozen=True)
class LanPeerRow:
    device_id: str
    name: str
    address: str
    state: str
    shares: list[str]
    sent_bytes: int
    received_bytes: int


@dataclass(frozen=True)
class LanStatus:
    port: int
    addresses: list[str]
    written_ms: int
    peers: list[LanPeerRow] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def status_path(home: Home) -> Path:
    return home.root / FILE_NAME


def write_status(home: Home, status: LanStatus) -> None:
    write_atomic(status_path(home), json.dumps(status.to_json(), indent=1) + "\n")


def remove_status(home: Home) -> None:
    with contextlib.suppress(FileNotFoundError):
        status_path(home).unlink()


def read_status(home: Home, now_ms: int) -> LanStatus | None:
    """The running daemon's LAN, or None (LAN off, no daemon, or a stale file)."""
    try:
        raw = json.loads(status_path(home).read_text())
        status = LanStatus(
            port=int(raw["port"]),
            addresses=[str(a) for a in raw["addresses"]],
            written_ms=int(raw["written_ms"]),
            peers=[LanPeerRow(**row) for row in raw["peers"]],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if now_ms - status.written_ms > STALE_AFTER_MS:
        return None
    return status


def peer_row(
    device_id: bytes,
    name: str,
    address: str,
    state: str,
    shares: tuple[bytes, ...],
    sent_bytes: int,
    received_bytes: int,
) -> LanPeerRow:
    return LanPeerRow(
        ids.format_id(device_id),
        name,
        address,
        state,
        [s.hex() for s in shares],
        sent_bytes,
        received_bytes,
    )
