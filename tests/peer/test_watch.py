"""The watcher, with real watchdog on a real folder (bounded waits), and its fallback paths."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peer.local.ignore import IgnoreRules
from peer.local.watch import ObserverLike, Watcher, WatchState, WatchStatus
from seams import SystemClock, ThreadExecutor

WAIT_S = 10.0
MAX_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")


@pytest.fixture
async def executor() -> AsyncIterator[ThreadExecutor]:
    pool = ThreadExecutor(2)
    yield pool
    pool.shutdown()


def make_watcher(root: Path, executor: ThreadExecutor, **kw: object) -> Watcher:
    rules = IgnoreRules.parse("*.log\n")
    return Watcher(root, clock=SystemClock(), executor=executor, ignore_rules=lambda: rules, **kw)  # type: ignore[arg-type]


async def collect_until(watcher: Watcher, wanted: set[str]) -> tuple[set[str], int]:
    """Batches until every wanted path was seen (or WAIT_S passed); returns paths and count."""
    seen: set[str] = set()
    batches = 0

    async def run() -> None:
        nonlocal batches
        while not wanted <= seen:
            batch = await watcher.next_batch()
            if not batch.full_rescan:
                batches += 1
                seen.update(batch.paths)

    await asyncio.wait_for(run(), WAIT_S)
    return seen, batches


async def test_real_events_arrive_debounced_and_filtered(
    tmp_path: Path, executor: ThreadExecutor
) -> None:
    (tmp_path / "sub").mkdir()
    async with make_watcher(tmp_path, executor, debounce_ms=50) as watcher:
        assert watcher.status.state is WatchState.WATCHING
        (tmp_path / "a.txt").write_bytes(b"a")
        (tmp_path / "sub" / "b.txt").write_bytes(b"b")
        (tmp_path / "noise.log").write_bytes(b"ignored by a rule")
        (tmp_path / ".DS_Store").write_bytes(b"ignored by default")
        (tmp_path / ".~drift-0123456789abcdef.tmp").write_bytes(b"ours")
        (tmp_path / "sub" / "b.txt").rename(tmp_path / "moved.txt")
        seen, batches = await collect_until(watcher, {"a.txt", "sub/b.txt", "moved.txt"})
        assert not any(p.endswith((".log", ".DS_Store", ".tmp")) for p in seen), seen
        assert batches <= 3, "a burst of events should come as one batch or very few"
        # a directory created after the start is watched too
        (tmp_path / "new").mkdir()
        await collect_until(watcher, {"new"})
        await asyncio.sleep(0.2)
        (tmp_path / "new" / "c.txt").write_bytes(b"c")
        seen, _ = await collect_until(watcher, {"new/c.txt"})
    assert watcher.status.state is WatchState.STOPPED


async def test_periodic_rescan_batches(tmp_path: Path, executor: ThreadExecutor) -> None:
    async with make_watcher(tmp_path, executor, rescan_interval_s=0.05) as watcher:
        batch = await asyncio.wait_for(watcher.next_batch(), WAIT_S)
        assert batch.full_rescan
        assert batch.paths == frozenset()


class FailingObserver:
    """An observer whose start fails like watchdog's does when inotify_add_watch says ENOSPC."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    def schedule(self, event_handler: object, path: str, *, recursive: bool) -> object:
        return None

    def start(self) -> None:
        raise self.error

    def stop(self) -> None:
        return None

    def join(self, timeout: float | None = None) -> None:
        return None

    def is_alive(self) -> bool:
        return False


@pytest.mark.parametrize(
    ("err", "words"),
    [
        (errno.ENOSPC, "ran out of file watches: raise fs.inotify.max_user_watches"),
        (errno.EMFILE, "ran out of inotify instances"),
        (errno.EACCES, "cannot watch the folder"),
    ],
)
async def test_injected_watch_failures_fall_back_to_polling(
    tmp_path: Path, executor: ThreadExecutor, err: int, words: str
) -> None:
    statuses: list[WatchStatus] = []

    def factory() -> ObserverLike:
        return FailingObserver(OSError(err, os.strerror(err)))

    watcher = make_watcher(
        tmp_path,
        executor,
        observer_factory=factory,
        fallback_rescan_interval_s=0.05,
        on_status=statuses.append,
    )
    async with watcher:
        assert watcher.status.state is WatchState.POLLING
        assert words in watcher.status.message
        assert "falling back to periodic rescans" in watcher.status.message
        batch = await asyncio.wait_for(watcher.next_batch(), WAIT_S)
        assert batch.full_rescan
    assert [s.state for s in statuses] == [
        WatchState.STARTING,
        WatchState.POLLING,
        WatchState.STOPPED,
    ]


async def test_a_dead_observer_is_noticed(tmp_path: Path, executor: ThreadExecutor) -> None:
    class DyingObserver(FailingObserver):
        def start(self) -> None:
            return None

    watcher = make_watcher(
        tmp_path,
        executor,
        rescan_interval_s=0.05,
        fallback_rescan_interval_s=0.05,
        observer_factory=lambda: DyingObserver(OSError()),
    )
    async with watcher:
        assert watcher.status.state is WatchState.WATCHING
        await asyncio.wait_for(watcher.next_batch(), WAIT_S)
        assert watcher.status.state is WatchState.POLLING
        assert "stopped unexpectedly" in watcher.status.message


def _can_lower_watch_limit() -> bool:
    if not MAX_WATCHES.exists() or not os.access(MAX_WATCHES, os.W_OK):
        return False
    try:
        value = MAX_WATCHES.read_text()
        MAX_WATCHES.write_text(value)
    except OSError:
        return False
    return True


def _read_limit() -> str:
    return MAX_WATCHES.read_text()


def _write_limit(value: str) -> None:
    MAX_WATCHES.write_text(value)


@pytest.mark.parametrize("limit", ["0", "1"])
async def test_running_out_of_inotify_watches_for_real(
    tmp_path: Path, executor: ThreadExecutor, limit: str
) -> None:
    """Lowers fs.inotify.max_user_watches for a moment (root, Linux) and restores it.

    With 0 the root's watch fails (watchdog raises); with 1 the root may get the last watch and
    watchdog silently skips the subdirectories: the probe after start must notice either way.
    """
    assert _can_lower_watch_limit(), (
        "cannot write /proc/sys/fs/inotify/max_user_watches here; the injected-failure test "
        "above covers the fallback"
    )
    for i in range(3):
        (tmp_path / f"d{i}").mkdir()
    watcher = make_watcher(tmp_path, executor, fallback_rescan_interval_s=30)
    original = _read_limit()
    try:
        _write_limit(limit)
        await watcher.start()
    finally:
        _write_limit(original)
    try:
        assert watcher.status.state is WatchState.POLLING, watcher.status
        assert "ran out of file watches" in watcher.status.message
    finally:
        await watcher.stop()
    assert _read_limit() == original
