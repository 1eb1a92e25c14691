"""The watcher: OS file events (watchdog) as debounced batches of changed paths for the engine.

Events arrive on watchdog's thread and are handed to the event loop with
``call_soon_threadsafe``; the loop side filters ignored paths and our temp files, and delivers a
batch once no event came for ``debounce_ms`` (or ``max_delay_ms`` after the first, so a file that
is written continuously still shows up). The consumer scans the batch's paths
(``Scanner.scan(batch.paths)``): events say *where* to look, never *what* changed.

Events can be lost (the kernel's queue overflows; watchdog silently skips directories it cannot
watch), so a periodic full rescan is always on. When the OS runs out of inotify watches or
instances, the watcher says so in plain words and keeps going on periodic rescans alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import errno
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from peer.local.ignore import IgnoreRules
from seams import Clock, Executor
from seams.tasks import end_tasks

log = logging.getLogger(__name__)


class WatchState(enum.StrEnum):
    STARTING = "starting"
    WATCHING = "watching"  # OS events plus the periodic rescan
    POLLING = "polling"  # no OS events: periodic rescans only, see the message
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class WatchStatus:
    state: WatchState
    message: str = ""


@dataclass(frozen=True, slots=True)
class WatchBatch:
    paths: frozenset[str]  # relative paths to rescan (each with what lies below it)
    full_rescan: bool = False  # the periodic safety net: scan the whole folder


class ObserverLike(Protocol):
    """What the watcher uses of a watchdog observer (the factory seam's product)."""

    def schedule(
        self, event_handler: FileSystemEventHandler, path: str, *, recursive: bool
    ) -> object: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...

    def is_alive(self) -> bool: ...


def inotify_watches_left() -> bool | None:
    """Whether this user can add one more inotify watch right now (None: not Linux/inotify).

    watchdog swallows a failure to watch a subdirectory (only the root's is raised), so after
    starting we probe: if no watch is left, some directories most likely went unwatched.
    """
    try:
        from watchdog.observers import inotify_c
    except (ImportError, OSError):
        return None
    fd = inotify_c.inotify_init()
    if fd < 0:
        return ctypes.get_errno() != errno.EMFILE
    try:
        wd = inotify_c.inotify_add_watch(fd, b"/", 0x00000100)  # IN_CREATE
        return wd >= 0 or ctypes.get_errno() != errno.ENOSPC
    finally:
        os.close(fd)


def _default_observer() -> ObserverLike:
    from watchdog.observers import Observer

    return Observer()  # type: ignore[return-value]


OUT_OF_WATCHES = (
    "the OS ran out of file watches: raise fs.inotify.max_user_watches "
    "(e.g. `sysctl fs.inotify.max_user_watches=524288`); falling back to periodic rescans "
    "every {interval:g} s"
)
OUT_OF_INSTANCES = (
    "the OS ran out of inotify instances: raise fs.inotify.max_user_instances; "
    "falling back to periodic rescans every {interval:g} s"
)
CANNOT_WATCH = (
    "cannot watch the folder ({reason}); falling back to periodic rescans every {interval:g} s"
)
WATCHER_DIED = (
    "the file watcher stopped unexpectedly; falling back to periodic rescans every {interval:g} s"
)

_SKIPPED_EVENTS = frozenset({"opened", "closed_no_write"})


class _Handler(FileSystemEventHandler):
    """Runs on watchdog's thread: only hands paths over to the loop."""

    def __init__(self, watcher: Watcher, loop: asyncio.AbstractEventLoop) -> None:
        self._watcher = watcher
        self._loop = loop

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _SKIPPED_EVENTS:
            return
        if event.is_directory and event.event_type == "modified":
            return  # a directory's entries changed: their own events say which
        paths = [os.fsdecode(event.src_path)]
        if event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        with contextlib.suppress(RuntimeError):  # the loop closed while we were stopping
            self._loop.call_soon_threadsafe(self._watcher._on_paths, paths, event.is_directory)


class Watcher:
    """Watches one share's folder; ``async for batch in watcher`` yields what to rescan."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        clock: Clock,
        executor: Executor,
        ignore_rules: Callable[[], IgnoreRules],
        debounce_ms: int = 50,
        max_delay_ms: int = 1_000,
        rescan_interval_s: float = 3_600.0,
        fallback_rescan_interval_s: float = 60.0,
        observer_factory: Callable[[], ObserverLike] = _default_observer,
        watches_left: Callable[[], bool | None] = inotify_watches_left,
        on_status: Callable[[WatchStatus], None] | None = None,
    ) -> None:
        self.root = os.path.realpath(os.fspath(root))
        self._prefix = self.root.rstrip(os.sep) + os.sep
        self._clock = clock
        self._executor = executor
        self._ignore_rules = ignore_rules
        self.debounce_ms = debounce_ms
        self.max_delay_ms = max_delay_ms
        self.rescan_interval_s = rescan_interval_s
        self.fallback_rescan_interval_s = fallback_rescan_interval_s
        self._observer_factory = observer_factory
        self._watches_left = watches_left
        self._on_status = on_status
        self._status = WatchStatus(WatchState.STOPPED)
        self._observer: ObserverLike | None = None
        self._pending: set[str] = set()
        self._first_at: float | None = None  # when the oldest pending event came
        self._last_at = 0.0
        self._wake = asyncio.Event()
        self._batches: asyncio.Queue[WatchBatch] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def status(self) -> WatchStatus:
        return self._status

    def _set_status(self, state: WatchState, message: str = "") -> None:
        status = WatchStatus(state, message)
        if status == self._status:
            return
        self._status = status
        if state is WatchState.POLLING:
            log.warning("%s: %s", self.root, message)
        else:
            log.info("%s: %s %s", self.root, state, message)
        if self._on_status is not None:
            self._on_status(status)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            raise RuntimeError("the watcher is already running")
        self._set_status(WatchState.STARTING)
        loop = asyncio.get_running_loop()
        observer = self._observer_factory()
        try:
            observer.schedule(_Handler(self, loop), self.root, recursive=True)
            # adding a watch per directory walks the whole tree: not on the loop
            await self._executor.run(observer.start)
        except OSError as exc:
            self._fall_back(exc)
        else:
            self._observer = observer
            if await self._executor.run(self._watches_left) is False:
                # events still come for the directories that got a watch; rescans cover the rest
                self._set_status(
                    WatchState.POLLING,
                    OUT_OF_WATCHES.format(interval=self.fallback_rescan_interval_s),
                )
            else:
                self._set_status(WatchState.WATCHING)
        self._tasks = [
            asyncio.create_task(self._debounce_loop(), name=f"watch-debounce:{self.root}"),
            asyncio.create_task(self._rescan_loop(), name=f"watch-rescan:{self.root}"),
        ]

    def _fall_back(self, exc: OSError) -> None:
        interval = self.fallback_rescan_interval_s
        if exc.errno == errno.ENOSPC:
            message = OUT_OF_WATCHES.format(interval=interval)
        elif exc.errno == errno.EMFILE:
            message = OUT_OF_INSTANCES.format(interval=interval)
        else:
            message = CANNOT_WATCH.format(reason=exc.strerror or exc, interval=interval)
        self._set_status(WatchState.POLLING, message)

    async def stop(self) -> None:
        await end_tasks(self._tasks, log)
        self._tasks = []
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            await self._executor.run(observer.join, 10.0)
        self._set_status(WatchState.STOPPED)

    async def __aenter__(self) -> Watcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- delivering --------------------------------------------------------------------------

    async def next_batch(self) -> WatchBatch:
        return await self._batches.get()

    def __aiter__(self) -> AsyncIterator[WatchBatch]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[WatchBatch]:
        while True:
            yield await self._batches.get()

    def _relative(self, path: str) -> str | None:
        if not path.startswith(self._prefix):
            return None
        rel = path[len(self._prefix) :]
        return rel.replace(os.sep, "/") if os.sep != "/" else rel

    def _on_paths(self, paths: list[str], is_dir: bool) -> None:
        """On the loop: keep the paths the engine cares about, and restart the debounce."""
        rules = self._ignore_rules()
        added = False
        for path in paths:
            rel = self._relative(path)
            if not rel or rules.is_ignored(rel, is_dir):
                continue
            self._pending.add(rel)
            added = True
        if not added:
            return
        now = self._clock.monotonic()
        if self._first_at is None:
            self._first_at = now
        self._last_at = now
        self._wake.set()

    async def _debounce_loop(self) -> None:
        debounce_s = self.debounce_ms / 1000
        max_delay_s = self.max_delay_ms / 1000
        while True:
            await self._wake.wait()
            while True:
                seen = self._last_at
                await self._clock.sleep(debounce_s)
                quiet = self._last_at == seen
                first = self._first_at if self._first_at is not None else seen
                overdue = self._clock.monotonic() - first >= max_delay_s
                if quiet or overdue:
                    break
            self._wake.clear()
            batch, self._pending = frozenset(self._pending), set()
            self._first_at = None
            if batch:
                self._batches.put_nowait(WatchBatch(batch))

    async def _rescan_loop(self) -> None:
        while True:
            polling = self._status.state is WatchState.POLLING
            await self._clock.sleep(
                self.fallback_rescan_interval_s if polling else self.rescan_interval_s
            )
            observer = self._observer
            if observer is not None and not observer.is_alive():
                self._observer = None
                self._set_status(
                    WatchState.POLLING,
                    WATCHER_DIED.format(interval=self.fallback_rescan_interval_s),
                )
            self._batches.put_nowait(WatchBatch(frozenset(), full_rescan=True))
