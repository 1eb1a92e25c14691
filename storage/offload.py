"""Running blocking work off the event loop, on an injected executor."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")


class Offload:
    """``await offload(fn, *args)`` runs ``fn`` on the executor (None: the loop's default)."""

    def __init__(self, executor: Executor | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.executor = executor

    def __call__(self, fn: Callable[..., T], *args: object, **kwargs: object) -> asyncio.Future[T]:
        return self.loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))
