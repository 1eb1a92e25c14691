"""Test doubles for the peer's local layer: a settable clock and an error-injecting filesystem."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from peer.fs import FileSystem, FsError


class FakeClock:
    """Wall time that moves only when told (or when slept on); ``on_sleep`` runs at each sleep."""

    def __init__(self, ms: int = 1_700_000_000_000) -> None:
        self.ms = ms
        self.on_sleep: Callable[[], None] | None = None
        self.slept_s = 0.0

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000

    async def sleep(self, seconds: float) -> None:
        self.slept_s += seconds
        self.ms += int(seconds * 1000)
        if self.on_sleep is not None:
            hook, self.on_sleep = self.on_sleep, None
            hook()

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


class ErrorFs:
    """Wraps a FileSystem; ``fail[(method, path)]`` is raised instead of calling through
    (syncthing's errorfs). ``calls`` counts calls per method."""

    def __init__(self, inner: FileSystem) -> None:
        self.inner = inner
        self.fail: dict[tuple[str, str], FsError] = {}
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if args and (name, args[0]) in self.fail:
                raise self.fail[(name, args[0])]
            return attr(*args, **kwargs)

        return call
