"""Small parts on their own: bandwidth limits, backoff, config, invite codes, content refs."""

from __future__ import annotations

from pathlib import Path

import pytest

from peer.device.config import DeviceConfig, ShareConfig
from peer.engine.content import decode_content, encode_content
from peer.engine.shares import InviteCode
from peer.errors import IntegrityError, UsageError
from peer.remote.backoff import Backoff
from peer.remote.ratelimit import Bandwidth
from protocol.invite import Invite
from seams import SeededRandom
from storage.manifest import FileRef, RefKind


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0
        self.slept = 0.0

    def now_ms(self) -> int:
        return int(self.t * 1000)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.t += seconds


async def test_bandwidth_limit_paces_bytes() -> None:
    clock = FakeClock()
    limit = Bandwidth(clock, bytes_per_s=1000)
    for _ in range(10):
        await limit.take(500)  # 5000 bytes at 1000 B/s, 500 B of burst
    assert 4.0 <= clock.slept <= 5.0
    unlimited = Bandwidth(clock)
    before = clock.slept
    await unlimited.take(10**9)
    assert clock.slept == before


def test_backoff_grows_with_jitter_and_caps() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0)
    rng = SeededRandom(3)
    delays = [backoff.delay(n, rng) for n in range(1, 8)]
    assert 0.5 <= delays[0] <= 1.0
    assert all(d <= 8.0 for d in delays)
    assert delays[5] >= 4.0
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered


def test_config_round_trip(tmp_path: Path) -> None:
    config = DeviceConfig(device_name='laptop "one"', relay_url="http://127.0.0.1:1")
    config.shares["ab" * 16] = ShareConfig("ab" * 16, "/tmp/x y", "Photos", paused=True)
    config.save(tmp_path / "config.toml")
    loaded = DeviceConfig.load(tmp_path / "config.toml")
    assert loaded == config
    assert loaded.share_by_name("Photos") is not None


def test_invite_code_round_trip_and_damage() -> None:
    invite = Invite(1, "http://127.0.0.1:9", b"s" * 16, b"g" * 32, b"o" * 32)
    code = InviteCode(invite, b"k" * 32, b"b" * 32)
    assert InviteCode.from_text(code.to_text()) == code
    with pytest.raises(UsageError):
        InviteCode.from_text(code.to_text().split("~")[0])
    with pytest.raises(UsageError):
        InviteCode.from_text(code.to_text()[:-10] + "0000000000")


def test_content_reference_round_trip() -> None:
    empty = FileRef(RefKind.EMPTY, 0, b"h" * 32, None)
    assert decode_content(encode_content(empty), 0, None) == empty
    with pytest.raises(IntegrityError):
        decode_content(b"h" * 32, 5, None)  # an empty version cannot have a size
    with pytest.raises(IntegrityError):
        decode_content(b"x" * 64, 5, b"not a block")
