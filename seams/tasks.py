"""Ending background tasks at shutdown without swallowing the caller's own cancellation.

The usual ``task.cancel()`` then ``with suppress(CancelledError): await task`` cannot tell the
task's cancellation from the caller's: a shutdown that is itself cancelled while it waits goes on
as if nothing happened (the notification socket of a closing device renewed its token for ever
that way). ``asyncio.wait`` never raises the tasks' errors, only the caller's cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any


async def end_tasks(tasks: Iterable[asyncio.Future[Any]], logger: logging.Logger | None) -> None:
    """Cancel ``tasks``, wait until every one is over, and log (not raise) what any of them
    failed with: one failing task must not keep the others from being ended. With no
    ``logger`` the failures are only retrieved: the caller reads the results it wants itself.
    A cancellation of the caller while it waits propagates as usual."""
    every = list(tasks)
    for task in every:
        task.cancel()
    if every:
        await asyncio.wait(every)
    for task in every:
        if not task.cancelled() and task.exception() is not None and logger is not None:
            logger.error("a background task had failed: %r", task.exception())
