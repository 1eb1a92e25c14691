"""What the parts of a share's sync pass share: its state, options, reports and helpers.

:class:`SyncParts` declares the state a :class:`~peer.engine.sync.ShareSync` holds, so the local
side (:mod:`peer.engine.publish`) and the remote side (:mod:`peer.engine.apply`) can be read,
and tested, as modules of their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from crdt.tree import FolderTree
from peer.device.store import FileError, ShareStore, SyncedFile
from peer.engine.content import RelayBlocks
from peer.engine.lanshare import ShareLan
from peer.engine.replica import ShareReplica
from peer.engine.state import ShareState
from peer.errors import RelayUnreachable
from peer.fs import (
    AlreadyExistsError,
    FileInfo,
    FileKind,
    FileSystem,
)
from peer.local.names import NameRules, encode_name
from peer.remote.link import RelayLink
from seams import Clock, Executor

logger = logging.getLogger("peer.engine")

MARKER = ".drift/share"
CONFLICT_MARK = " (conflicted copy "  # in names made by crdt.names.conflicted_copy_name
APPEND_BATCH = 100
SMALL_FILE_BYTES = 1 << 20
FILES_IN_FLIGHT = 16  # small files: their fsyncs wait on the disk, not on a core
IMPORT_BATCH = 200


@dataclass(frozen=True, slots=True)
class SyncOptions:
    mass_delete_fraction: float = 0.5
    mass_delete_min_files: int = 10
    retry_after_ms: int = 10_000
    # A changed file is published once two looks this far apart agree on its size and mtime.
    stable_interval_s: float = 0.1


@dataclass
class PassReport:
    published: int = 0
    downloaded: int = 0
    moved: int = 0
    trashed: int = 0
    conflicts: int = 0
    errors: int = 0
    changing: list[str] = field(default_factory=list)  # files still being written: retry soon
    waiting: str = ""  # why the pass stopped early and should be retried soon (a missing key)


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def name_of(path: str) -> str:
    return path.rpartition("/")[2]


def join_path(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def depth_of(path: str) -> int:
    return path.count("/")


class SyncParts:
    """State and helpers of one share's sync (see :class:`~peer.engine.sync.ShareSync`)."""

    replica: ShareReplica
    store: ShareStore
    fs: FileSystem
    link: RelayLink
    clock: Clock
    executor: Executor
    options: SyncOptions
    rules: NameRules
    share: str
    blocks: RelayBlocks
    lan: ShareLan
    relay_down: RelayUnreachable | None  # known unreachable (passes go on with LAN peers)
    state: ShareState
    reason: str
    apply_pending: bool  # the disk may not match the tree: the next pass applies it
    on_progress: Callable[[str, int, int], None] | None

    @property
    def tree(self) -> FolderTree:
        return self.replica.tree

    def take_back(self) -> None:
        """Take back what the chain made invalid since the last look (``peer.engine.retract``);
        at the pass's safe points only: before envelopes are applied, with nothing published
        half-way."""
        done = self.replica.retract_if_due(self.disk_path)
        if done is None:
            return
        self.apply_pending = True  # the tree lost entries the disk still holds
        logger.warning(
            "share %s: %d envelope(s) of others and %d of ours taken back (invalid under the "
            "membership chain); %d local change(s) to publish again",
            self.share,
            done.others,
            done.own,
            done.rows,
        )

    def disk_path(self, tree_path: str) -> str:
        return "/".join(encode_name(p, self.rules) for p in tree_path.split("/"))

    def _record(self, path: str, disk: str, info: FileInfo, content: bytes | None = None) -> None:
        entry = self.tree.lookup(path)
        if entry is None:
            return
        version = entry.version.version_id if entry.version is not None else None
        if content is None and entry.version is not None:
            content = entry.version.manifest
        self.store.put_file(
            SyncedFile(
                path,
                disk,
                entry.id,
                "dir" if entry.is_dir else "file",
                info.size,
                info.mtime_ns,
                info.inode,
                info.executable,
                content,
                version,
                self.clock.now_ms() * 1_000_000,
            )
        )
        self.store.clear_file_error(path)
        self.store.tick()

    def _file_error(self, path: str, op: str, reason: str) -> None:
        now = self.clock.now_ms()
        self.store.set_file_error(
            FileError(path, op, reason, now, now + self.options.retry_after_ms)
        )

    # Folders known to exist during a download phase (which moves and removes nothing): each
    # is checked once, not once per file written into it. None outside such a phase.
    _dirs_ready: set[str] | None = None

    async def _ensure_dir(self, disk: str) -> None:
        """The folder exists afterwards (an existing folder is fine, a file there is not)."""
        if not disk or (self._dirs_ready is not None and disk in self._dirs_ready):
            return
        try:
            await self.executor.run(self.fs.mkdir, disk, parents=True)
        except AlreadyExistsError:
            info = await self.executor.run(self.fs.lstat, disk)
            if info.kind is not FileKind.DIR:
                raise
        if self._dirs_ready is not None:
            self._dirs_ready.add(disk)

    async def _bounded(
        self,
        items: list[str],
        job: Callable[[str], Awaitable[None]],
        size: Callable[[str], int],
        phase: str = "",
    ) -> None:
        """Small files several at a time (their fsyncs and round trips overlap), large ones
        alone (each already streams with several blocks in flight, in bounded memory)."""
        small = [i for i in items if size(i) <= SMALL_FILE_BYTES]
        gate = asyncio.Semaphore(FILES_IN_FLIGHT)
        total_bytes = sum(size(i) for i in items)
        done = [0]

        async def tracked(item: str) -> None:
            await job(item)
            done[0] += size(item)
            if self.on_progress is not None and phase:
                self.on_progress(phase, done[0], total_bytes)

        async def gated(item: str) -> None:
            async with gate:
                await tracked(item)

        tasks = [asyncio.ensure_future(gated(i)) for i in small]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for item in items:
            if size(item) > SMALL_FILE_BYTES:
                await tracked(item)
