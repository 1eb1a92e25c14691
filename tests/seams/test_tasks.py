"""Ending background tasks: the caller's own cancellation is never swallowed, and one failed task
does not keep the others running."""

from __future__ import annotations

import asyncio
import logging

import pytest

from seams.tasks import end_tasks

log = logging.getLogger("test.tasks")


async def _stubborn(cleaning: asyncio.Event, release: asyncio.Event) -> None:
    """A task whose cleanup takes a while after it is cancelled (closing a socket, say)."""
    try:
        await asyncio.sleep(3600)
    finally:
        cleaning.set()
        await release.wait()


async def test_a_shutdown_cancelled_while_it_waits_is_cancelled() -> None:
    cleaning, release = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(_stubborn(cleaning, release))
    await asyncio.sleep(0)
    closing = asyncio.create_task(end_tasks([task], log))
    await cleaning.wait()
    closing.cancel()  # the shutdown itself is cancelled while the task still cleans up
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(closing, 5)
    assert task.done()


async def test_a_failed_task_is_logged_and_the_others_still_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise RuntimeError("disk on fire")

    broken = asyncio.create_task(fails())
    await asyncio.sleep(0)
    sleeper = asyncio.create_task(asyncio.sleep(3600))
    with caplog.at_level(logging.ERROR, logger="test.tasks"):
        await end_tasks([broken, sleeper], log)
    assert sleeper.cancelled()
    assert "disk on fire" in caplog.text
    await end_tasks([], log)  # nothing to end is fine
