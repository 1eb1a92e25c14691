"""Ingest: a file → chunks → sealed blocks in a store → the reference to its version.

Ingest and restore (storage.restore) hold a bounded number of chunks in flight
(``max_in_flight``), never a whole file, so a 5 GB file needs the same memory as a 5 MB one. The
CPU work (reading + chunking, hashing, compressing, sealing, opening) runs on the injected executor
(``None``: the loop's default one); BLAKE3, SHA-256, AES-GCM, zstd and FastCDC all release the GIL,
so on two cores the reader and the sealers overlap. Called from asyncio; ``asyncio.run`` makes it
usable from plain code.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import Executor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar

from storage.blockstore import BlockSink
from storage.chunking import DEFAULT_CHUNKING, Chunker, ChunkingParams
from storage.errors import SourceError, StorageError
from storage.hashing import BlockId, ContentHasher
from storage.keys import SealingKey, ShareKeys
from storage.manifest import (
    MAX_ENTRIES,
    AnyManifest,
    FileRef,
    Manifest,
    ManifestEntry,
    PartEntry,
    PartsManifest,
    RefKind,
    seal_manifest,
)
from storage.offload import Offload
from storage.sealing import SealedBlock, SealedChunk, seal_chunk

T = TypeVar("T")

DEFAULT_MAX_IN_FLIGHT = 4
# Blocks asked about in one has_many (one S3 HEAD fan-out); bounded like everything else.
_HAS_BATCH = 4


@dataclass(slots=True)
class IngestStats:
    bytes_read: int = 0
    chunks: int = 0
    new_blocks: int = 0  # blocks this ingest added to the store (data and manifest)
    new_block_bytes: int = 0
    reused_blocks: int = 0  # chunks whose block the store already had


@dataclass(frozen=True, slots=True)
class IngestResult:
    ref: FileRef
    manifest: AnyManifest | None  # the top manifest block's content; None if there is none
    stats: IngestStats = field(compare=False)


class _Writer:
    """Stores sealed blocks, skipping those the store (or this ingest) already has."""

    def __init__(self, store: BlockSink, stats: IngestStats) -> None:
        self.store = store
        self.stats = stats
        self.seen: set[BlockId] = set()

    async def store_blocks(self, blocks: list[SealedBlock]) -> None:
        unseen = [b for b in blocks if b.block_id not in self.seen]
        present = await self.store.has_many({b.block_id for b in unseen})
        for block in blocks:
            if block.block_id in self.seen or block.block_id in present:
                self.stats.reused_blocks += 1
            elif await self.store.put(block.block_id, block.data, verify=False):
                self.stats.new_blocks += 1
                self.stats.new_block_bytes += len(block.data)
            else:
                self.stats.reused_blocks += 1
            self.seen.add(block.block_id)


async def ingest_file(
    path: str | os.PathLike[str],
    store: BlockSink,
    share: ShareKeys,
    key: SealingKey,
    *,
    params: ChunkingParams = DEFAULT_CHUNKING,
    executor: Executor | None = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    chunks_per_part: int = MAX_ENTRIES,
) -> IngestResult:
    """Chunk, seal and store one file; returns the reference to record for this version."""
    run = Offload(executor)
    try:
        opened: BinaryIO | bytes = await run(_open_or_read_small, path, params.min_size)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if isinstance(opened, bytes):
        return await _ingest_small(opened, store, share, key, run)
    try:
        return await ingest_stream(
            opened,
            store,
            share,
            key,
            params=params,
            executor=executor,
            max_in_flight=max_in_flight,
            name=str(path),
            chunks_per_part=chunks_per_part,
        )
    finally:
        opened.close()


def _open_or_read_small(path: str | os.PathLike[str], min_size: int) -> BinaryIO | bytes:
    """A file object to stream, or, for a file of at most one minimum chunk, its bytes."""
    reader = open(path, "rb")  # noqa: SIM115 - returned open on purpose, closed by the caller
    try:
        if os.fstat(reader.fileno()).st_size <= min_size:
            data = reader.read(min_size + 1)
            if len(data) <= min_size:  # still small: the file may have grown meanwhile
                reader.close()
                return data
            reader.seek(0)
        return reader
    except BaseException:
        reader.close()
        raise


async def _ingest_small(
    data: bytes, store: BlockSink, share: ShareKeys, key: SealingKey, run: Offload
) -> IngestResult:
    """One hop to the executor instead of the streaming machinery: most files are small."""
    stats = IngestStats(bytes_read=len(data))
    if not data:
        content_hash = ContentHasher(share.chunk_id_key).digest()
        return IngestResult(FileRef(RefKind.EMPTY, 0, content_hash, None), None, stats)
    sealed = await run(seal_chunk, share, key, data)
    stats.chunks = 1
    await _Writer(store, stats).store_blocks([sealed.block])
    # A file below the minimum chunk size is one chunk; its content hash is that chunk's id.
    ref = FileRef(RefKind.CHUNK, len(data), sealed.chunk_id, sealed.block.block_id)
    return IngestResult(ref, None, stats)


async def ingest_stream(
    reader: BinaryIO,
    store: BlockSink,
    share: ShareKeys,
    key: SealingKey,
    *,
    params: ChunkingParams = DEFAULT_CHUNKING,
    executor: Executor | None = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    name: str = "stream",
    chunks_per_part: int = MAX_ENTRIES,
) -> IngestResult:
    """Like :func:`ingest_file`, for any binary file object (read in a worker thread).

    A file of more than ``chunks_per_part`` chunks (one full manifest) is stored as parts: each
    a chunk manifest, listed by a parts manifest. Only one part's entries are held at a time.
    """
    if max_in_flight < 1 or not 2 <= chunks_per_part <= MAX_ENTRIES:
        raise ValueError("max_in_flight must be >= 1 and chunks_per_part in 2..MAX_ENTRIES")
    run = Offload(executor)
    stats = IngestStats()
    writer = _Writer(store, stats)
    hasher = ContentHasher(share.chunk_id_key)
    chunks = Chunker(share.chunking_key, params).stream(reader)

    # Per-part content hashes, appended by the reader as each part's last chunk is read (before
    # the consumer can see that chunk). The first part's hash is the file hash so far; later
    # parts need a hasher of their own, so files of one part hash their bytes only once.
    part_hashes: list[bytes] = []
    part_hasher: ContentHasher | None = None
    chunks_read = 0

    def next_chunk() -> bytes | None:
        nonlocal part_hasher, chunks_read
        try:
            view = next(chunks, None)
        except OSError as exc:
            raise SourceError(f"cannot read {name}: {exc.strerror or exc}") from exc
        if view is None:
            return None
        data = bytes(view)  # the chunker's view is only valid until its next chunk
        hasher.update(data)
        if part_hasher is not None:
            part_hasher.update(data)
        chunks_read += 1
        if chunks_read % chunks_per_part == 0:
            part_hashes.append((part_hasher or hasher).digest())
            part_hasher = ContentHasher(share.chunk_id_key)
        return data

    parts: list[PartEntry] = []
    last_part: list[Manifest] = []

    async def close_part(entries: list[ManifestEntry], part_hash: bytes) -> None:
        size = sum(e.size for e in entries)
        manifest = Manifest(size, part_hash, tuple(entries))
        block = await run(seal_manifest, share, key, manifest)
        await writer.store_blocks([block])
        parts.append(PartEntry(part_hash, block.block_id, key.epoch, size))
        last_part[:] = [manifest]
        entries.clear()

    # Reader → (bounded queue of sealing futures) → writer, in order.
    queue: asyncio.Queue[asyncio.Future[SealedChunk] | None] = asyncio.Queue(max_in_flight)

    async def produce() -> None:
        try:
            while (data := await run(next_chunk)) is not None:
                await queue.put(run(seal_chunk, share, key, data))
        except Exception as exc:
            # Hand the failure to the consumer in order, where it awaits the next chunk.
            failed: asyncio.Future[SealedChunk] = run.loop.create_future()
            failed.set_exception(exc)
            await queue.put(failed)
            return
        await queue.put(None)

    producer = asyncio.create_task(produce())
    entries: list[ManifestEntry] = []
    try:
        finished = False
        while not finished:
            first = await queue.get()
            if first is None:
                break
            futures = [first]
            # Whatever else is already queued joins the batch: one has_many for all of it.
            while len(futures) < _HAS_BATCH and not queue.empty():
                more = queue.get_nowait()
                if more is None:
                    finished = True
                    break
                futures.append(more)
            batch = [await f for f in futures]
            stats.chunks += len(batch)
            await writer.store_blocks([s.block for s in batch])
            for sealed in batch:
                entries.append(
                    ManifestEntry(sealed.chunk_id, sealed.block.block_id, key.epoch, sealed.size)
                )
                if len(entries) == chunks_per_part:
                    await close_part(entries, part_hashes[len(parts)])
        await producer
    finally:
        if not producer.done():
            producer.cancel()
            with suppress(asyncio.CancelledError, StorageError):
                await producer
        while not queue.empty():
            pending = queue.get_nowait()
            if pending is not None:
                pending.cancel()
    stats.bytes_read = hasher.size
    content_hash = hasher.digest()
    if parts and entries:
        assert part_hasher is not None
        await close_part(entries, part_hasher.digest())
    if len(parts) == 1:  # exactly one full part: its manifest is the file's
        ref = FileRef(RefKind.MANIFEST, hasher.size, content_hash, parts[0].block_id)
        return IngestResult(ref, last_part[0], stats)
    if parts:
        top: AnyManifest = PartsManifest(hasher.size, content_hash, tuple(parts))
    elif len(entries) > 1:
        top = Manifest(hasher.size, content_hash, tuple(entries))
    elif entries:
        ref = FileRef(RefKind.CHUNK, hasher.size, content_hash, entries[0].block_id)
        return IngestResult(ref, None, stats)
    else:
        return IngestResult(FileRef(RefKind.EMPTY, 0, content_hash, None), None, stats)
    block = await run(seal_manifest, share, key, top)
    await writer.store_blocks([block])
    ref = FileRef(RefKind.MANIFEST, hasher.size, content_hash, block.block_id)
    return IngestResult(ref, top, stats)
