"""Bandwidth limits for one device's LAN traffic, and byte counters per peer.

``TokenBucket`` lets ``rate_bps`` bytes per second through on average, with bursts up to
``burst_bytes``; ``acquire(n)`` waits (on the injected ``Clock``) until ``n`` bytes may pass. A
message larger than the burst is let through once the bucket is full and leaves it in debt, so a
single large chunk is never blocked forever and the average rate still holds. Waiters are served
in order. One ``LanBandwidth`` (an upload and a download bucket) is shared by every connection of
the device; ``PeerCounters`` per peer device say how many bytes went through whom (for
``drift status``).
"""

from __future__ import annotations

import asyncio
import dataclasses

from seams import Clock


class TokenBucket:
    """``rate_bps`` bytes/s on average, ``burst_bytes`` at once; ``None`` rate means unlimited."""

    def __init__(
        self, clock: Clock, rate_bps: float | None, burst_bytes: int | None = None
    ) -> None:
        if rate_bps is not None and rate_bps <= 0:
            raise ValueError("a rate limit is a positive number of bytes per second")
        self._clock = clock
        self.rate_bps = rate_bps
        # By default a quarter second's worth: smooth, yet one chunk does not need many waits.
        self.burst_bytes = burst_bytes or max(1, int((rate_bps or 0) / 4))
        self._tokens = float(self.burst_bytes)
        self._updated = clock.monotonic()
        self._turn = asyncio.Lock()

    async def acquire(self, size: int) -> None:
        """Wait until ``size`` bytes may pass, then take them."""
        if self.rate_bps is None or size <= 0:
            return
        async with self._turn:
            needed = min(size, self.burst_bytes)
            self._refill()
            while self._tokens < needed:
                await self._clock.sleep((needed - self._tokens) / self.rate_bps)
                self._refill()
            self._tokens -= size

    def _refill(self) -> None:
        assert self.rate_bps is not None
        now = self._clock.monotonic()
        self._tokens = min(
            float(self.burst_bytes), self._tokens + (now - self._updated) * self.rate_bps
        )
        self._updated = now


@dataclasses.dataclass
class PeerCounters:
    """Bytes exchanged with one peer device over all its connections."""

    sent_bytes: int = 0
    received_bytes: int = 0


@dataclasses.dataclass(frozen=True)
class BandwidthLimits:
    up_bps: float | None = None
    down_bps: float | None = None
    burst_bytes: int | None = None


class LanBandwidth:
    """One device's upload and download limits, and what went through each peer."""

    def __init__(self, clock: Clock, limits: BandwidthLimits = BandwidthLimits()) -> None:
        self.up = TokenBucket(clock, limits.up_bps, limits.burst_bytes)
        self.down = TokenBucket(clock, limits.down_bps, limits.burst_bytes)
        self._peers: dict[bytes, PeerCounters] = {}

    async def sending(self, peer_device_id: bytes, size: int) -> None:
        """Wait for upload room for ``size`` bytes to ``peer_device_id``, and count them."""
        await self.up.acquire(size)
        self._counters(peer_device_id).sent_bytes += size

    async def received(self, peer_device_id: bytes, size: int) -> None:
        """Count ``size`` bytes from the peer; waits so reading slows to the download limit."""
        self._counters(peer_device_id).received_bytes += size
        await self.down.acquire(size)

    def peers(self) -> dict[bytes, PeerCounters]:
        """Per peer device id, a copy of its counters."""
        return {peer: dataclasses.replace(c) for peer, c in self._peers.items()}

    def _counters(self, peer_device_id: bytes) -> PeerCounters:
        return self._peers.setdefault(peer_device_id, PeerCounters())
