"""Whole folders: ingest every file under a root, restore a snapshot of them elsewhere.

A :class:`TreeSnapshot` maps relative paths to file references. It is the demo's and `drift
store`'s stand-in for the folder tree the peer keeps in the CRDT; saved as JSON it holds names in
the clear, so it belongs on the device, never in a block store.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from storage.blockstore import BlockStore
from storage.chunking import DEFAULT_CHUNKING, ChunkingParams
from storage.errors import (
    BlockNotFoundError,
    IntegrityError,
    ParameterError,
    SourceError,
    UnknownEpochError,
)
from storage.ingest import IngestResult, ingest_file
from storage.keys import Keyring, SealingKey, ShareKeys
from storage.manifest import FileRef, Manifest
from storage.restore import restore_file

DEFAULT_FILES_IN_FLIGHT = 4


@dataclass(frozen=True, slots=True)
class FileError:
    """One file that could not be ingested or restored; the others go on."""

    path: str  # relative to the folder
    op: str  # "ingest" or "restore"
    reason: str


@dataclass(slots=True)
class TreeStats:
    files: int = 0
    bytes: int = 0
    chunks: int = 0
    new_blocks: int = 0
    new_block_bytes: int = 0
    reused_blocks: int = 0
    seconds: float = 0.0
    errors: list[FileError] = field(default_factory=list)
    distinct_chunks: dict[bytes, int] = field(default_factory=dict, repr=False)

    def add(self, result: IngestResult) -> None:
        self.files += 1
        self.bytes += result.stats.bytes_read
        self.chunks += result.stats.chunks
        self.new_blocks += result.stats.new_blocks
        self.new_block_bytes += result.stats.new_block_bytes
        self.reused_blocks += result.stats.reused_blocks
        if isinstance(result.manifest, Manifest):
            self.distinct_chunks.update((e.chunk_id, e.size) for e in result.manifest.entries)
        elif result.ref.size:  # one chunk, or a file in parts (over 14 GiB) counted whole
            self.distinct_chunks[result.ref.content_hash] = result.ref.size

    @property
    def dedup_ratio(self) -> float:
        """Bytes ingested per byte of distinct chunk plaintext."""
        distinct = sum(self.distinct_chunks.values())
        return self.bytes / distinct if distinct else 1.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class TreeSnapshot:
    files: dict[str, FileRef]

    def to_json(self) -> str:
        return json.dumps({p: ref.to_dict() for p, ref in sorted(self.files.items())}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> TreeSnapshot:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ParameterError(f"not a snapshot: {exc}") from None
        if not isinstance(raw, dict):
            raise ParameterError("not a snapshot: expected an object of paths")
        return cls({_safe_relpath(p): FileRef.from_dict(ref) for p, ref in raw.items()})


def _safe_relpath(path: str) -> str:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ParameterError(f"snapshot path {path!r} escapes the folder")
    return str(pure)


def walk_files(root: Path) -> Iterator[Path]:
    """Regular files under root, in a stable order; symlinks and special files are skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


async def _run_all(jobs: list[Awaitable[None]]) -> None:
    """Run jobs concurrently; the first error cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def ingest_tree(
    root: str | os.PathLike[str],
    store: BlockStore,
    share: ShareKeys,
    key: SealingKey,
    *,
    params: ChunkingParams = DEFAULT_CHUNKING,
    executor: Executor | None = None,
    files_in_flight: int = DEFAULT_FILES_IN_FLIGHT,
) -> tuple[TreeSnapshot, TreeStats]:
    """Ingest every regular file under root.

    A file that cannot be read (vanished, no permission) becomes a :class:`FileError` in the
    stats and the rest go on; a store failure stops everything (nothing else could be stored).
    """
    base = Path(root)
    paths = await asyncio.get_running_loop().run_in_executor(
        executor, lambda: list(walk_files(base))
    )
    stats = TreeStats()
    refs: dict[str, FileRef] = {}
    gate = asyncio.Semaphore(files_in_flight)

    async def one(path: Path) -> None:
        relpath = path.relative_to(base).as_posix()
        async with gate:
            try:
                result = await ingest_file(
                    path, store, share, key, params=params, executor=executor
                )
            except SourceError as exc:
                stats.errors.append(FileError(relpath, "ingest", str(exc)))
                return
        refs[relpath] = result.ref
        stats.add(result)

    start = time.perf_counter()
    await _run_all([one(p) for p in paths])
    stats.seconds = time.perf_counter() - start
    stats.errors.sort(key=lambda e: e.path)
    return TreeSnapshot(refs), stats


async def restore_tree(
    snapshot: TreeSnapshot,
    store: BlockStore,
    share: ShareKeys,
    keyring: Keyring,
    dest: str | os.PathLike[str],
    *,
    executor: Executor | None = None,
    files_in_flight: int = DEFAULT_FILES_IN_FLIGHT,
    fsync: bool = True,
) -> tuple[int, list[FileError]]:
    """Restore every file of a snapshot under dest; returns bytes written and per-file errors.

    A file whose blocks are missing, damaged or sealed under an unknown epoch, or whose target
    cannot be written, becomes a :class:`FileError`; a store failure stops everything.
    """
    base = Path(dest)
    gate = asyncio.Semaphore(files_in_flight)
    written = 0
    errors: list[FileError] = []

    async def one(relpath: str, ref: FileRef) -> None:
        nonlocal written
        target = base / _safe_relpath(relpath)
        async with gate:
            try:
                await asyncio.get_running_loop().run_in_executor(
                    executor, lambda: target.parent.mkdir(parents=True, exist_ok=True)
                )
                stats = await restore_file(
                    ref, store, share, keyring, target, executor=executor, fsync=fsync
                )
            except OSError as exc:
                errors.append(FileError(relpath, "restore", f"cannot write: {exc.strerror}"))
                return
            except (IntegrityError, BlockNotFoundError, UnknownEpochError, SourceError) as exc:
                errors.append(FileError(relpath, "restore", str(exc)))
                return
        written += stats.bytes_written

    await _run_all([one(p, ref) for p, ref in snapshot.files.items()])
    errors.sort(key=lambda e: e.path)
    return written, errors
