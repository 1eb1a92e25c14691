"""A token bucket for upload and download bandwidth limits (bytes per second; 0 = unlimited)."""

from __future__ import annotations

from seams import Clock


class Bandwidth:
    def __init__(self, clock: Clock, bytes_per_s: int = 0, burst_s: float = 0.5) -> None:
        self.clock = clock
        self.rate = max(0, bytes_per_s)
        self.burst = max(1.0, self.rate * burst_s)
        self.tokens = self.burst
        self.last = clock.monotonic()

    async def take(self, size: int) -> None:
        """Wait until ``size`` bytes may pass (a block larger than the burst waits its share)."""
        if self.rate == 0:
            return
        now = self.clock.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= size
        if self.tokens < 0:
            await self.clock.sleep(-self.tokens / self.rate)
