"""Token buckets on a stepped clock (exact) and on real time (bounded), and per-peer counters."""

from __future__ import annotations

import asyncio

import pytest

from peer.lan.bandwidth import BandwidthLimits, LanBandwidth, TokenBucket
from seams import SystemClock


class SteppedClock:
    """A clock that moves only when someone sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def now_ms(self) -> int:
        return int(self.now * 1000)

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_the_average_rate_holds_and_a_burst_passes_at_once() -> None:
    clock = SteppedClock()
    bucket = TokenBucket(clock, rate_bps=1000, burst_bytes=500)
    await bucket.acquire(500)
    assert clock.now == 100.0  # the burst needs no wait
    for _ in range(4):
        await bucket.acquire(250)
    assert clock.now == pytest.approx(101.0)


async def test_a_message_larger_than_the_burst_passes_and_leaves_a_debt() -> None:
    clock = SteppedClock()
    bucket = TokenBucket(clock, rate_bps=1000, burst_bytes=100)
    await bucket.acquire(1000)  # bucket full: it goes through now
    assert clock.now == 100.0
    await bucket.acquire(100)  # …and the next waits until the 900-byte debt is paid
    assert clock.now == pytest.approx(101.0)


async def test_no_rate_means_no_wait() -> None:
    clock = SteppedClock()
    bucket = TokenBucket(clock, rate_bps=None)
    await bucket.acquire(10**9)
    assert clock.sleeps == []
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(clock, rate_bps=0)


async def test_the_limit_is_shared_by_connections_and_counted_per_peer_on_real_time() -> None:
    bandwidth = LanBandwidth(SystemClock(), BandwidthLimits(up_bps=40_000, burst_bytes=2_000))
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def connection(peer: bytes) -> None:
        for _ in range(5):
            await bandwidth.sending(peer, 2_000)

    # Two connections, 20 000 bytes in all: 2 000 pass at once, the rest at 40 kB/s.
    await asyncio.gather(connection(b"a"), connection(b"b"))
    elapsed = loop.time() - started
    assert 0.4 <= elapsed < 1.2
    await bandwidth.received(b"a", 123)
    peers = bandwidth.peers()
    assert (peers[b"a"].sent_bytes, peers[b"a"].received_bytes) == (10_000, 123)
    assert (peers[b"b"].sent_bytes, peers[b"b"].received_bytes) == (10_000, 0)
