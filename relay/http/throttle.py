"""Per-client limits on the requests that need no token (the login exchange).

Every challenge stores a nonce, so an anonymous client could otherwise grow the nonce table as
fast as it can send. A token bucket per client address, kept in memory per relay process, bounds
that; behind a TLS proxy the client address is the one the proxy appends last to
``X-Forwarded-For`` (earlier entries are whatever the client claimed).
"""

from __future__ import annotations

from aiohttp import web

from relay.errors import RateLimited
from seams import Clock

_MAX_CLIENTS = 100_000


class LoginThrottle:
    def __init__(self, per_minute: int, clock: Clock, behind_proxy: bool) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._behind_proxy = behind_proxy
        self._buckets: dict[str, tuple[float, float]] = {}  # client → (tokens, at)

    def client_of(self, request: web.Request) -> str:
        if self._behind_proxy:
            forwarded = request.headers.get("X-Forwarded-For", "")
            last = forwarded.rsplit(",", 1)[-1].strip()
            if last:
                return last
        return request.remote or "unknown"

    def check(self, request: web.Request) -> None:
        client = self.client_of(request)
        now = self._clock.monotonic()
        rate = self.per_minute / 60.0
        tokens, at = self._buckets.get(client, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - at) * rate)
        if tokens < 1.0:
            raise RateLimited(
                "too many login attempts from this address; wait a moment",
                retry_after_s=max(1, int((1.0 - tokens) / rate) + 1),
            )
        if len(self._buckets) >= _MAX_CLIENTS and client not in self._buckets:
            self._buckets.clear()  # bounded memory; a reset only forgives
        self._buckets[client] = (tokens - 1.0, now)
