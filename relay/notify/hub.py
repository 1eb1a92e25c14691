"""Fan-out of (share, seq) to the subscribers of one relay process.

Topics are share ids (the log's latest seq) and :func:`chain_topic` of a share id (the
membership chain's height); both only ever grow, so "the highest value not taken yet" is all a
subscriber needs per topic.

A subscriber never queues: it holds, per share, the highest sequence number it has not taken yet,
so its memory is bounded by the shares it follows however slow it is, and a publisher never waits
on it. A consumer wakes, takes everything pending at once and learns the latest head of each share
(the log then gives it every row after its cursor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

CHAIN_SUFFIX = "/chain"


def chain_topic(share_id: str) -> str:
    """The topic that carries a share's membership-chain height (its log uses the share id)."""
    return share_id + CHAIN_SUFFIX


class Subscription:
    __slots__ = ("_hub", "_waiter", "closed", "listener", "pending", "shares")

    def __init__(self, hub: Hub, shares: frozenset[str]) -> None:
        self._hub = hub
        self.shares = shares
        self.pending: dict[str, int] = {}
        self._waiter: asyncio.Future[None] | None = None
        #: Called (synchronously) when something becomes pending: for consumers that would
        #: rather not keep a task parked in :meth:`wait` (one per WebSocket adds up).
        self.listener: Callable[[], None] | None = None
        self.closed = False

    def offer(self, share_id: str, seq: int) -> None:
        if seq > self.pending.get(share_id, 0):
            self.pending[share_id] = seq
            if self._waiter is not None:
                _wake(self._waiter)
            if self.listener is not None:
                self.listener()

    def take(self) -> dict[str, int]:
        out, self.pending = self.pending, {}
        return out

    async def wait(self, timeout_s: float) -> dict[str, int]:
        """What became pending within ``timeout_s`` (empty on timeout or close)."""
        if not self.pending and not self.closed:
            # A bare future and one timer: the cheapest wait asyncio has (10,000 of these wake
            # at once on a busy share).
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout_s, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self.take()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub.remove(self)
            if self._waiter is not None:
                _wake(self._waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Hub:
    """Subscriptions of this process by share, and the latest seq seen per followed share."""

    def __init__(self) -> None:
        # Insertion-ordered (a dict, not a set): fan-out follows subscription order, the same
        # in every run, so a seeded simulation replays notifications exactly.
        self._by_share: dict[str, dict[Subscription, None]] = {}
        self.latest: dict[str, int] = {}
        self.count = 0

    def add(self, shares: Iterable[str]) -> Subscription:
        sub = Subscription(self, frozenset(shares))
        for share in sorted(sub.shares):
            self._by_share.setdefault(share, {})[sub] = None
        self.count += 1
        return sub

    def remove(self, sub: Subscription) -> None:
        for share in sorted(sub.shares):
            subs = self._by_share.get(share)
            if subs is None:
                continue
            subs.pop(sub, None)
            if not subs:
                del self._by_share[share]
                self.latest.pop(share, None)
        self.count -= 1

    def deliver(self, share_id: str, seq: int) -> int:
        """Offer ``seq`` to the share's subscribers; how many were woken (0 if not newer)."""
        subs = self._by_share.get(share_id)
        if not subs or seq <= self.latest.get(share_id, 0):
            return 0
        self.latest[share_id] = seq
        for sub in subs:
            sub.offer(share_id, seq)
        return len(subs)

    def subscribers_of(self, share_id: str) -> list[Subscription]:
        return list(self._by_share.get(share_id, ()))

    def followed(self) -> list[str]:
        return list(self._by_share)
