"""A relay notification hub that fans out in subscription order.

WORKAROUND for a determinism bug in the relay: ``relay/notify/hub.py`` keeps each share's
subscribers in a ``set[Subscription]`` and ``Hub.deliver`` iterates it, so the order in which
subscribers are offered a new head follows object addresses, which differ from run to run. The
simulation swaps the relay's hub for this subclass (same API, an insertion-ordered dict per share)
before the first device subscribes. Remove it once the hub itself keeps an ordered collection.
"""

from __future__ import annotations

from collections.abc import Iterable

from relay.notify.hub import Hub, Subscription


class OrderedHub(Hub):
    def __init__(self) -> None:
        super().__init__()
        self._ordered: dict[str, dict[int, Subscription]] = {}

    def add(self, shares: Iterable[str]) -> Subscription:
        sub = Subscription(self, frozenset(shares))
        for share in sorted(sub.shares):
            self._ordered.setdefault(share, {})[id(sub)] = sub
        self.count += 1
        return sub

    def remove(self, sub: Subscription) -> None:
        for share in sorted(sub.shares):
            subs = self._ordered.get(share)
            if subs is None:
                continue
            subs.pop(id(sub), None)
            if not subs:
                del self._ordered[share]
                self.latest.pop(share, None)
        self.count -= 1

    def deliver(self, share_id: str, seq: int) -> int:
        subs = self._ordered.get(share_id)
        if not subs or seq <= self.latest.get(share_id, 0):
            return 0
        self.latest[share_id] = seq
        for sub in list(subs.values()):
            sub.offer(share_id, seq)
        return len(subs)

    def subscribers_of(self, share_id: str) -> list[Subscription]:
        return list(self._ordered.get(share_id, {}).values())

    def followed(self) -> list[str]:
        return list(self._ordered)
