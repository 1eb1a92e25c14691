"""Notifications of appends: (share, seq) to subscribers, in-process or across relays (Redis)."""

from __future__ import annotations

from relay.notify.base import LocalNotifier, Notifier
from relay.notify.hub import CHAIN_SUFFIX, Hub, Subscription, chain_topic
from seams import Clock, RandomSource


def open_notifier(url: str, prefix: str, clock: Clock, rng: RandomSource) -> Notifier:
    if url.startswith("local:"):
        return LocalNotifier()
    if url.startswith("redis://"):
        from relay.notify.redis import RedisNotifier

        return RedisNotifier(url, prefix, clock, rng)
    raise ValueError(f"unknown notify URL {url!r}")


__all__ = [
    "CHAIN_SUFFIX",
    "Hub",
    "LocalNotifier",
    "Notifier",
    "Subscription",
    "chain_topic",
    "open_notifier",
]
