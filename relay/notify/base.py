"""The Notifier seam: publish an append, follow shares; in-process or across processes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from relay.notify.hub import Hub, Subscription


class Notifier(Protocol):
    hub: Hub

    async def start(self) -> None: ...

    async def publish(self, share_id: str, seq: int) -> None:
        """Tell every subscriber of the share, in every relay process, that ``seq`` exists."""
        ...

    def subscribe(self, share_ids: Iterable[str]) -> Subscription: ...

    async def close(self) -> None: ...


class LocalNotifier:
    """One relay process: publication goes straight to this process's hub."""

    def __init__(self) -> None:
        self.hub = Hub()

    async def start(self) -> None:
        return None

    async def publish(self, share_id: str, seq: int) -> None:
        self.hub.deliver(share_id, seq)

    def subscribe(self, share_ids: Iterable[str]) -> Subscription:
        return self.hub.add(share_ids)

    async def close(self) -> None:
        return None
