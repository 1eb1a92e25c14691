"""A real asyncio event loop whose clock is virtual: idle time costs nothing.

``VirtualTimeLoop`` is ``asyncio.BaseEventLoop`` with a selector that never blocks. When no callback
is ready, the loop's own poll step jumps the clock straight to the earliest timer, so an hour of
heartbeats and backoffs runs in milliseconds. Everything else is stock asyncio: tasks, futures,
``asyncio.sleep``, ``wait_for``, ``timeout``, locks, events and queues behave as in production.

Determinism. The ready queue is FIFO. Timers are ordered by (when, tie, sequence): ``ties="fifo"``
fires timers due at the same instant in the order they were set; ``ties="seeded"`` draws the tie
from a seeded stream, so each seed explores a different (still reproducible) order of simultaneous
timers, which asyncio itself leaves undefined.

Real I/O is refused. Sockets, pipes, subprocesses, signals and DNS raise ``RealIoRefused``: a
simulated program talks through the simulated network only. ``run_in_executor(None, fn)`` runs
``fn`` inline, at once, on the loop (``asyncio.to_thread`` too): a thread would finish at a
real-time moment the seed cannot replay. An explicit thread or process pool is refused; any other
``concurrent.futures.Executor`` (``seams.InlineExecutor().as_pool()``) must finish at submit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import itertools
import math
import threading
import weakref
from asyncio import base_events, events
from collections.abc import Callable, Coroutine, Iterable
from contextvars import Context
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

from seams import SeededRandom
from simulations.runtime.errors import (
    BudgetExceeded,
    Deadlock,
    RealIoRefused,
    SimulationError,
    UnhandledErrors,
)

T = TypeVar("T")
Ties = Literal["fifo", "seeded"]

DEFAULT_BUDGET_S = 7 * 24 * 3600.0
DEFAULT_MAX_ITERATIONS = 20_000_000


class _OrderedTimerHandle(events.TimerHandle):
    """A timer that sorts by (when, tie, sequence), so equal deadlines never compare as equal."""

    __slots__ = ("_sort",)

    def __init__(
        self,
        when: float,
        order: tuple[float, int],
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: Context | None,
    ) -> None:
        super().__init__(when, callback, args, loop, context)
        self._sort = (when, *order)  # built once: the heap compares timers very often

    def __lt__(self, other: object) -> bool:
        # The heap's comparison (a quarter of a million per seed): every timer of this loop is
        # one of these, so no isinstance test on the way.
        try:
            return self._sort < other._sort  # type: ignore[attr-defined,no-any-return]
        except AttributeError:
            return NotImplemented

    def __le__(self, other: object) -> bool:
        if isinstance(other, _OrderedTimerHandle):
            return self._sort <= other._sort
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if isinstance(other, _OrderedTimerHandle):
            return self._sort > other._sort
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if isinstance(other, _OrderedTimerHandle):
            return self._sort >= other._sort
        return NotImplemented


class _NeverBlockingSelector:
    """Stands where asyncio keeps its selector: each poll advances virtual time instead."""

    def __init__(self, advance: Callable[[float | None], None]) -> None:
        self._advance = advance

    def select(self, timeout: float | None) -> list[Any]:
        self._advance(timeout)
        return []

    def close(self) -> None:
        return None


def _refuse(name: str, advice: str) -> Callable[..., NoReturn]:
    def refused(self: VirtualTimeLoop, *args: object, **kwargs: object) -> NoReturn:
        raise RealIoRefused(f"loop.{name}() would use real I/O inside a simulation; {advice}")

    refused.__name__ = name
    return refused


_USE_NETWORK = "go through the Network seam (the simulated network in a simulation)"
_NO_PROCESSES = "simulations run no processes, pipes or signals"


class VirtualTimeLoop(base_events.BaseEventLoop):
    """An asyncio loop on virtual time that fails loudly instead of waiting forever.

    ``budget_s``: virtual seconds the loop may reach before ``BudgetExceeded``.
    ``max_iterations``: loop iterations before ``BudgetExceeded`` (catches tasks that spin on
    ``sleep(0)`` without ever letting time pass).
    """

    def __init__(
        self,
        *,
        start_s: float = 0.0,
        budget_s: float | None = DEFAULT_BUDGET_S,
        max_iterations: int | None = DEFAULT_MAX_ITERATIONS,
        ties: Ties = "fifo",
        rng: SeededRandom | None = None,
    ) -> None:
        super().__init__()
        if ties == "seeded" and rng is None:
            raise SimulationError("ties='seeded' needs a SeededRandom to draw the ties from")
        self._now = float(start_s)
        self._budget_s = budget_s
        self._max_iterations = max_iterations
        self._tie_rng = rng if ties == "seeded" else None
        self._sequence = itertools.count()
        self._selector = _NeverBlockingSelector(self._advance)
        self._task_sequence = itertools.count()
        self._task_order: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = (
            weakref.WeakKeyDictionary()
        )
        self.iterations = 0
        self.unhandled: list[str] = []
        self.set_exception_handler(_record_unhandled)

    # -- the clock -------------------------------------------------------------------------

    def time(self) -> float:
        return self._now

    def _advance(self, timeout: float | None) -> None:
        self.iterations += 1
        if self._max_iterations is not None and self.iterations > self._max_iterations:
            raise BudgetExceeded(
                f"more than {self._max_iterations} loop iterations without finishing"
                " (a task that never waits on time?)",
                self._now,
                describe_pending(self),
            )
        if timeout is None:
            raise Deadlock(self._now, describe_pending(self))
        if timeout <= 0:
            return
        # Land exactly on the earliest deadline (not now + (when - now), which may round short).
        target = self._now + timeout
        if timeout < base_events.MAXIMUM_SELECT_TIMEOUT and self._scheduled:
            target = self._scheduled[0].when()
        if self._budget_s is not None and target > self._budget_s:
            raise BudgetExceeded(
                f"the next timer is at t={target:.3f}s, past the budget of {self._budget_s:.3f}s",
                self._now,
                describe_pending(self),
            )
        self._now = max(self._now, target)

    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()
        tie = self._tie_rng.uniform(0.0, 1.0) if self._tie_rng is not None else 0.0
        timer = _OrderedTimerHandle(
            when, (tie, next(self._sequence)), callback, args, self, context
        )
        if timer._source_traceback:
            del timer._source_traceback[-1]
        base_events.heapq.heappush(self._scheduled, timer)
        timer._scheduled = True
        return timer

    # -- tasks in a replayable order ---------------------------------------------------------

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        context: Context | None = None,
    ) -> asyncio.Task[T]:
        task = super().create_task(coro, name=name, context=context)
        self._task_order[task] = next(self._task_sequence)
        return task

    def ordered(self, tasks: Iterable[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
        """``tasks`` in creation order. ``asyncio.all_tasks`` is a set ordered by memory
        address, so anything done to "all tasks" must go through here to replay."""
        return sorted(tasks, key=lambda t: (self._task_order.get(t, math.inf), t.get_name()))

    # -- hooks a selector loop would implement ----------------------------------------------

    def _process_events(self, event_list: list[Any]) -> None:
        return None

    def _write_to_self(self) -> None:
        # Only the loop's own thread may schedule work, so there is never a sleeping poll to wake.
        return None

    def call_soon_threadsafe(
        self, callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> asyncio.Handle:
        if self._thread_id is not None and threading.get_ident() != self._thread_id:
            raise RealIoRefused(
                "call_soon_threadsafe() from another thread: a simulation runs on one thread only"
            )
        return super().call_soon_threadsafe(callback, *args, context=context)

    # -- executors ---------------------------------------------------------------------------

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        self._check_closed()
        future: asyncio.Future[T] = self.create_future()
        if executor is None:
            try:
                future.set_result(func(*args))
            except Exception as exc:  # delivered through the future, as a pool would
                future.set_exception(exc)
            return future
        if isinstance(
            executor, concurrent.futures.ThreadPoolExecutor | concurrent.futures.ProcessPoolExecutor
        ):
            raise RealIoRefused(
                f"run_in_executor() on a {type(executor).__name__} inside a simulation: its work"
                " would finish at a real-time moment no seed replays; pass"
                " seams.InlineExecutor().as_pool() or None"
            )
        submitted = executor.submit(func, *args)
        if not submitted.done():
            raise RealIoRefused(
                f"{type(executor).__name__}.submit() returned before the work finished; a"
                " simulation needs executors that run work at submit time"
            )
        error = submitted.exception()
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(submitted.result())
        return future

    def set_default_executor(self, executor: object) -> NoReturn:
        raise RealIoRefused(
            "set_default_executor() inside a simulation: run_in_executor(None, ...) runs inline"
        )

    # -- real I/O, refused -------------------------------------------------------------------

    create_connection = _refuse("create_connection", _USE_NETWORK)
    create_server = _refuse("create_server", _USE_NETWORK)
    create_unix_connection = _refuse("create_unix_connection", _USE_NETWORK)
    create_unix_server = _refuse("create_unix_server", _USE_NETWORK)
    create_datagram_endpoint = _refuse("create_datagram_endpoint", _USE_NETWORK)
    connect_accepted_socket = _refuse("connect_accepted_socket", _USE_NETWORK)
    start_tls = _refuse("start_tls", _USE_NETWORK)

    async def sendfile(self, transport: asyncio.BaseTransport, *args: Any, **kwargs: Any) -> int:
        # A simulated transport has no socket: callers (aiohttp's FileResponse) fall back to
        # reading the file and writing it, as they do over TLS.
        raise NotImplementedError("sendfile needs a socket; simulated transports have none")

    getaddrinfo = _refuse("getaddrinfo", "simulated hosts are named, never resolved")
    getnameinfo = _refuse("getnameinfo", "simulated hosts are named, never resolved")
    sock_recv = _refuse("sock_recv", _USE_NETWORK)
    sock_recv_into = _refuse("sock_recv_into", _USE_NETWORK)
    sock_recvfrom = _refuse("sock_recvfrom", _USE_NETWORK)
    sock_recvfrom_into = _refuse("sock_recvfrom_into", _USE_NETWORK)
    sock_sendall = _refuse("sock_sendall", _USE_NETWORK)
    sock_sendto = _refuse("sock_sendto", _USE_NETWORK)
    sock_connect = _refuse("sock_connect", _USE_NETWORK)
    sock_accept = _refuse("sock_accept", _USE_NETWORK)
    sock_sendfile = _refuse("sock_sendfile", _USE_NETWORK)
    add_reader = _refuse("add_reader", _USE_NETWORK)
    add_writer = _refuse("add_writer", _USE_NETWORK)
    remove_reader = _refuse("remove_reader", _USE_NETWORK)
    remove_writer = _refuse("remove_writer", _USE_NETWORK)
    connect_read_pipe = _refuse("connect_read_pipe", _NO_PROCESSES)
    connect_write_pipe = _refuse("connect_write_pipe", _NO_PROCESSES)
    subprocess_exec = _refuse("subprocess_exec", _NO_PROCESSES)
    subprocess_shell = _refuse("subprocess_shell", _NO_PROCESSES)
    add_signal_handler = _refuse("add_signal_handler", _NO_PROCESSES)
    remove_signal_handler = _refuse("remove_signal_handler", _NO_PROCESSES)


def _record_unhandled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    message = str(context.get("message", "unhandled error"))
    exc = context.get("exception")
    if exc is not None:
        message = f"{message}: {type(exc).__name__}: {exc}"
    if isinstance(loop, VirtualTimeLoop):
        loop.unhandled.append(message)


def describe_pending(loop: asyncio.AbstractEventLoop) -> list[str]:
    """One line per unfinished task: its name, where each coroutine in its chain is suspended,
    and the future it waits on."""
    lines = []
    for task in asyncio.all_tasks(loop):
        chain = []
        awaited: object = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                break
            code = frame.f_code
            chain.append(f"{code.co_qualname} ({Path(code.co_filename).name}:{frame.f_lineno})")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        waiter = getattr(task, "_fut_waiter", None)
        waiting = f" waiting on {waiter!r}" if waiter is not None else ""
        lines.append(f"{task.get_name()}: {' -> '.join(chain) or '(not started)'}{waiting}")
    return sorted(lines)


def run(
    main: Coroutine[Any, Any, T],
    *,
    seed: int | None = None,
    budget_s: float | None = DEFAULT_BUDGET_S,
    max_iterations: int | None = DEFAULT_MAX_ITERATIONS,
    ties: Ties = "fifo",
    start_s: float = 0.0,
    fail_on_unhandled: bool = True,
) -> T:
    """Run ``main`` to completion on a fresh ``VirtualTimeLoop`` and close it.

    Raises ``Deadlock`` when every task waits with no timer set, ``BudgetExceeded`` past
    ``budget_s`` virtual seconds or ``max_iterations`` loop turns, and ``UnhandledErrors`` when a
    task failed and nobody looked at its exception. Tasks still pending when ``main`` returns are
    cancelled, as ``asyncio.run`` does. ``seed`` draws timer ties when ``ties="seeded"`` and is
    named (``SEED=N``) on whatever error the run raises.
    """
    # What lived before the run is not its garbage: frozen, it is not scanned by the closing
    # collection (which costs a second per run in a test process holding millions of objects).
    gc.freeze()
    try:
        return _run(main, seed, budget_s, max_iterations, ties, start_s, fail_on_unhandled)
    finally:
        gc.unfreeze()


def _run(
    main: Coroutine[Any, Any, T],
    seed: int | None,
    budget_s: float | None,
    max_iterations: int | None,
    ties: Ties,
    start_s: float,
    fail_on_unhandled: bool,
) -> T:
    rng = SeededRandom(seed).fork("loop.ties") if seed is not None else None
    try:
        loop = VirtualTimeLoop(
            start_s=start_s, budget_s=budget_s, max_iterations=max_iterations, ties=ties, rng=rng
        )
    except SimulationError:
        main.close()
        raise
    try:
        result = loop.run_until_complete(main)
    except BaseException as exc:
        if seed is not None:
            exc.add_note(f"SEED={seed}")
        _shut_down(loop)
        raise
    _shut_down(loop)
    if fail_on_unhandled and loop.unhandled:
        error = UnhandledErrors(loop.unhandled)
        if seed is not None:
            error.add_note(f"SEED={seed}")
        raise error
    return result


def _shut_down(loop: VirtualTimeLoop) -> None:
    """Cancel what is left, finish async generators, close; then let the garbage collector report
    tasks whose exceptions nobody retrieved."""
    try:
        pending = loop.ordered(asyncio.all_tasks(loop))
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    except SimulationError as exc:
        # A task that refuses to die (waits again after cancellation) leaves the loop stuck;
        # the run's own outcome is what matters, so record and move on.
        loop.unhandled.append(f"while cancelling leftover tasks: {exc}")
    finally:
        loop.close()
        gc.collect()
