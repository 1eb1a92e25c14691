"""The seams behave the same way whoever drives them: real and simulated variants agree."""

from __future__ import annotations

import asyncio
import threading

import pytest

from seams import InlineExecutor, OsRandom, SeededRandom, SystemClock, ThreadExecutor


def test_seeded_random_replays_and_forks_independently() -> None:
    a, b = SeededRandom(42), SeededRandom(42)
    assert a.bytes(32) == b.bytes(32)
    assert SeededRandom(43).bytes(32) != SeededRandom(42).bytes(32)
    # A draw on one fork leaves the sibling fork's stream where it was.
    root = SeededRandom(7)
    first = root.fork("relay").bytes(8)
    root.fork("peer").bytes(1000)
    assert root.fork("relay").bytes(8) == first


def test_os_random_gives_fresh_bytes_and_bounded_floats() -> None:
    rng = OsRandom()
    assert rng.bytes(16) != rng.bytes(16)
    assert all(1.0 <= rng.uniform(1.0, 2.0) < 2.0 for _ in range(100))


async def test_thread_executor_runs_off_the_loop_thread() -> None:
    executor = ThreadExecutor(max_workers=2)
    try:
        name = await executor.run(lambda: threading.current_thread().name)
        assert name.startswith("driftsync")
        assert executor.as_pool().submit(sum, [1, 2, 3]).result(timeout=5) == 6
    finally:
        executor.shutdown()


async def test_inline_executor_runs_in_the_caller_and_reports_errors_through_futures() -> None:
    executor = InlineExecutor()
    assert await executor.run(threading.current_thread) is threading.current_thread()
    future = executor.as_pool().submit(int, "not a number")
    with pytest.raises(ValueError, match="invalid literal"):
        future.result()


async def test_system_clock_sleeps_on_the_loop() -> None:
    clock = SystemClock()
    start = clock.monotonic()
    assert start == pytest.approx(asyncio.get_running_loop().time(), abs=0.01)
    await clock.sleep(0.02)
    assert clock.monotonic() - start >= 0.02
    assert clock.now_ms() > 1_700_000_000_000
