"""Restore: a file version's blocks → verified plaintext, streamed, or written atomically.

:func:`read_version` yields a version's chunks in order, each fetched ahead (at most
``max_in_flight`` at a time), opened and checked against its chunk id, epoch and size; after the
last chunk it checks the whole size and content hash. :func:`restore_file` writes those chunks to
a temp file beside the destination, fsyncs and renames it: the destination is the old file or the
complete, verified new one, never something in between.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from storage.blockstore import BlockSource
from storage.errors import ContentMismatchError, MalformedManifestError, SourceError
from storage.hashing import BlockId, ChunkId, ContentHasher
from storage.ingest import DEFAULT_MAX_IN_FLIGHT
from storage.keys import Keyring, ShareKeys
from storage.manifest import AnyManifest, FileRef, Manifest, RefKind, open_manifest
from storage.offload import Offload
from storage.sealing import open_chunk


@dataclass(frozen=True, slots=True)
class _Want:
    chunk_id: ChunkId
    block_id: BlockId
    epoch: int | None
    size: int


async def load_manifest(
    ref: FileRef,
    store: BlockSource,
    share: ShareKeys,
    keyring: Keyring,
    *,
    executor: Executor | None = None,
) -> AnyManifest:
    """Fetch and open the top manifest of a manifest-kind version, checked against the ref."""
    if ref.kind is not RefKind.MANIFEST or ref.block_id is None:
        raise ValueError("only a manifest-kind version has a manifest")
    sealed = await store.get(ref.block_id)
    manifest = await Offload(executor)(open_manifest, share, keyring, sealed)
    if manifest.file_size != ref.size or manifest.content_hash != ref.content_hash:
        raise ContentMismatchError(
            f"manifest {ref.block_id.hex()} describes another file than the version asked for"
        )
    return manifest


async def _wants(
    ref: FileRef,
    store: BlockSource,
    share: ShareKeys,
    keyring: Keyring,
    offload: Offload,
) -> AsyncIterator[_Want]:
    """The version's chunks in order; a large file's part manifests load one at a time."""
    if ref.kind is RefKind.EMPTY:
        return
    if ref.kind is RefKind.CHUNK:
        assert ref.block_id is not None
        # A one-chunk file's content hash is its chunk id.
        yield _Want(ChunkId(ref.content_hash), ref.block_id, None, ref.size)
        return
    top = await load_manifest(ref, store, share, keyring, executor=offload.executor)
    if isinstance(top, Manifest):
        for e in top.entries:
            yield _Want(e.chunk_id, e.block_id, e.epoch, e.size)
        return
    for part in top.parts:
        sealed = await store.get(part.block_id)
        child = await offload(open_manifest, share, keyring, sealed, expected_epoch=part.epoch)
        if not isinstance(child, Manifest):
            raise MalformedManifestError("a part of a file must list chunks, not more parts")
        if child.file_size != part.size or child.content_hash != part.content_hash:
            raise ContentMismatchError(
                f"part manifest {part.block_id.hex()} does not match its entry in the file's"
            )
        for e in child.entries:
            yield _Want(e.chunk_id, e.block_id, e.epoch, e.size)


async def read_version(
    ref: FileRef,
    store: BlockSource,
    share: ShareKeys,
    keyring: Keyring,
    *,
    executor: Executor | None = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> AsyncIterator[bytes]:
    """The version's plaintext, chunk by chunk, each verified; raises on any mismatch."""
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be at least 1")
    offload = Offload(executor)

    async def fetch(want: _Want) -> bytes:
        sealed = await store.get(want.block_id)  # the store verifies the block id
        plain = await offload(
            open_chunk, share, keyring, sealed, chunk_id=want.chunk_id, expected_epoch=want.epoch
        )
        if len(plain) != want.size:
            raise ContentMismatchError(
                f"chunk {want.chunk_id.hex()} is {len(plain)} bytes, its manifest says {want.size}"
            )
        return plain

    hasher = ContentHasher(share.chunk_id_key)
    ahead: deque[asyncio.Task[bytes]] = deque()
    upcoming = _wants(ref, store, share, keyring, offload)
    try:
        while len(ahead) < max_in_flight and (want := await anext(upcoming, None)) is not None:
            ahead.append(asyncio.ensure_future(fetch(want)))
        while ahead:
            plain = await ahead.popleft()
            if (want := await anext(upcoming, None)) is not None:
                ahead.append(asyncio.ensure_future(fetch(want)))
            await offload(hasher.update, plain)
            yield plain
    finally:
        for task in ahead:
            task.cancel()
        for task in ahead:
            with suppress(asyncio.CancelledError, Exception):
                await task
        await upcoming.aclose()
    if hasher.size != ref.size or hasher.digest() != ref.content_hash:
        raise ContentMismatchError(
            "restored content does not match the version's size and content hash"
        )


@dataclass(frozen=True, slots=True)
class RestoreStats:
    bytes_written: int
    chunks: int


async def restore_file(
    ref: FileRef,
    store: BlockSource,
    share: ShareKeys,
    keyring: Keyring,
    dest: str | os.PathLike[str],
    *,
    executor: Executor | None = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    fsync: bool = True,
) -> RestoreStats:
    """Write a version to ``dest`` atomically (temp file + fsync + rename)."""
    offload = Offload(executor)
    target = Path(dest)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.drift-tmp")
    try:
        fd = await offload(os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise SourceError(f"cannot write {target}: {exc.strerror or exc}") from exc
    written = chunks = 0
    try:
        try:
            async for plain in read_version(
                ref, store, share, keyring, executor=executor, max_in_flight=max_in_flight
            ):
                await offload(_write_all, fd, plain)
                written += len(plain)
                chunks += 1
            if fsync:
                await offload(os.fsync, fd)
        finally:
            os.close(fd)
        await offload(os.replace, tmp, target)
        if fsync:
            await offload(_fsync_dir, target.parent)
    except BaseException as exc:
        with suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise SourceError(f"cannot write {target}: {exc.strerror or exc}") from exc
        raise
    return RestoreStats(written, chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
