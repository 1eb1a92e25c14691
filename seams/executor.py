"""CPU and blocking work as a seam: a thread pool for real, inline in simulations.

Hashing, AES, zstd and boto3 release the GIL, so a small thread pool overlaps them across cores.
In a simulation the same call runs inline on the loop, so its effects are ordered by the seed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Executor(Protocol):
    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...

    def as_pool(self) -> concurrent.futures.Executor:
        """The same executor for APIs that take a ``concurrent.futures.Executor``."""
        ...

    def shutdown(self) -> None: ...


class ThreadExecutor:
    def __init__(self, max_workers: int | None = None, name: str = "driftsync") -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix=name)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def as_pool(self) -> concurrent.futures.Executor:
        return self._pool

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _InlinePool(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` that runs each call at submit time, in the caller."""

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # delivered through the future, as a pool would
            future.set_exception(exc)
        return future


class InlineExecutor:
    """Runs work in the calling task: deterministic, for simulations and tests."""

    def __init__(self) -> None:
        self._pool = _InlinePool()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return fn(*args, **kwargs)

    def as_pool(self) -> concurrent.futures.Executor:
        return self._pool

    def shutdown(self) -> None:
        return None
