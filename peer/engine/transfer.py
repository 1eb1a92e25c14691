"""Moving file content: a local file → sealed blocks at the relay, a version → a file on disk.

Upload streams the file through ``storage.ingest`` into :class:`RelayBlocks` (bounded memory,
only blocks the relay lacks are sent). Download streams ``storage.restore.read_version`` into the
FileSystem seam's atomic write (temp file, fsync, rename): the real path holds the old file or the
complete, verified new one, never a part. A guard (``expect``) refuses to replace a file that
changed since it was last synced.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from peer.engine.content import RelayBlocks, block_of, decode_content, encode_content
from peer.engine.keys import ShareCrypto
from peer.engine.lanfetch import index_version, plan_from_lan, read_planned
from peer.engine.lanshare import ShareLan
from peer.errors import IntegrityError, RelayUnreachable
from peer.fs import FileInfo, FileSystem
from peer.fs.base import Expectation
from seams import Executor, InlineExecutor
from storage.chunking import DEFAULT_CHUNKING
from storage.errors import StorageError
from storage.hashing import BlockId, ChunkId, ContentHasher, verify_block_id
from storage.ingest import ingest_stream
from storage.manifest import FileRef, RefKind
from storage.restore import read_version
from storage.sealing import SealedChunk, open_chunk, seal_chunk

IN_MEMORY_WRITE_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class Uploaded:
    content: bytes
    size: int
    blocks: tuple[bytes, ...]  # every block the version references (manifest first)


def _read_and_seal(
    fs: FileSystem, path: str, crypto: ShareCrypto, epoch: int, limit: int
) -> tuple[bytes, SealedChunk | None] | None:
    """A small file's bytes and its one sealed chunk, in one hop to the executor; None if the
    file grew past ``limit`` meanwhile (it then streams like any other)."""
    data = fs.read_range(path, 0, limit + 1)
    if len(data) > limit:
        return None
    return data, (seal_chunk(crypto.share_keys, crypto.sealing_key(epoch), data) if data else None)


async def upload_file(
    fs: FileSystem,
    path: str,
    blocks: RelayBlocks,
    crypto: ShareCrypto,
    epoch: int,
    executor: Executor,
    size_hint: int | None = None,
    lan: ShareLan | None = None,
) -> Uploaded:
    uploaded = await _upload(fs, path, blocks, crypto, epoch, executor, size_hint)
    if lan is not None:  # so LAN peers can be served it, and owed blocks rebuilt from it
        index_version(lan, path, uploaded.content, uploaded.size, blocks, crypto, epoch=epoch)
    return uploaded


async def _upload(
    fs: FileSystem,
    path: str,
    blocks: RelayBlocks,
    crypto: ShareCrypto,
    epoch: int,
    executor: Executor,
    size_hint: int | None,
) -> Uploaded:
    if size_hint is not None and size_hint <= DEFAULT_CHUNKING.min_size:
        # Most files are small: one chunk, so one hop instead of the streaming pipeline (the
        # same reference storage.ingest makes for a file below the minimum chunk size).
        small = await executor.run(
            _read_and_seal, fs, path, crypto, epoch, DEFAULT_CHUNKING.min_size
        )
        if small is not None:
            data, sealed = small
            if sealed is None:
                empty = ContentHasher(crypto.share_keys.chunk_id_key).digest()
                return Uploaded(encode_content(FileRef(RefKind.EMPTY, 0, empty, None)), 0, ())
            await blocks.put(sealed.block.block_id, sealed.block.data)
            ref = FileRef(RefKind.CHUNK, len(data), sealed.chunk_id, sealed.block.block_id)
            return Uploaded(encode_content(ref), len(data), (bytes(sealed.block.block_id),))
    reader = await executor.run(fs.open_read, path)
    try:
        result = await ingest_stream(
            reader,
            blocks,  # type: ignore[arg-type]  # the block-store duck type storage uses
            crypto.share_keys,
            crypto.sealing_key(epoch),
            executor=executor.as_pool(),
            name=path,
        )
    finally:
        await executor.run(reader.close)
    ref = result.ref
    referenced: list[bytes] = [] if ref.block_id is None else [bytes(ref.block_id)]
    if result.manifest is not None:
        referenced.extend(bytes(b) for b in result.manifest.block_ids())
    return Uploaded(encode_content(ref), ref.size, tuple(dict.fromkeys(referenced)))


async def download_file(
    fs: FileSystem,
    path: str,
    content: bytes,
    size: int,
    mtime_ms: int,
    blocks: RelayBlocks,
    crypto: ShareCrypto,
    executor: Executor,
    expect: Expectation,
    executable: bool = False,
    lan: ShareLan | None = None,
    relay_away: bool = False,
) -> FileInfo:
    """Write the version at ``path``: from LAN peers first (``lan``), the relay for the rest
    (``relay_away``: it is known to be unreachable, so fail at once instead)."""
    if lan is None:
        return await _from_relay(
            fs, path, content, size, mtime_ms, blocks, crypto, executor, expect, executable
        )
    plan = await plan_from_lan(lan, content, size, blocks, crypto)
    if plan is None:
        if relay_away:
            raise RelayUnreachable("no LAN peer has this file and the relay is unreachable")
        info = await _from_relay(
            fs, path, content, size, mtime_ms, blocks, crypto, executor, expect, executable
        )
        index_version(lan, path, content, size, blocks, crypto)
        return info
    chunks = read_planned(plan, lan, blocks, crypto, executor, content, size, relay_away)
    mtime_ns = mtime_ms * 1_000_000
    info = await _write(fs, path, chunks, size, mtime_ns, executor, expect, executable)
    index_version(lan, path, content, size, blocks, crypto, plan=plan)
    return info


async def _write(
    fs: FileSystem,
    path: str,
    chunks: AsyncIterator[bytes],
    size: int,
    mtime_ns: int,
    executor: Executor,
    expect: Expectation,
    executable: bool,
) -> FileInfo:
    if size <= IN_MEMORY_WRITE_BYTES or isinstance(executor, InlineExecutor):
        data = [c async for c in chunks]
        return await executor.run(
            fs.write_atomic,
            path,
            data,
            mtime_ns=mtime_ns,
            executable=executable,
            expect=expect,
        )
    loop = asyncio.get_running_loop()
    return await executor.run(
        fs.write_atomic,
        path,
        _pull(chunks, loop),
        mtime_ns=mtime_ns,
        executable=executable,
        expect=expect,
    )


async def _from_relay(
    fs: FileSystem,
    path: str,
    content: bytes,
    size: int,
    mtime_ms: int,
    blocks: RelayBlocks,
    crypto: ShareCrypto,
    executor: Executor,
    expect: Expectation,
    executable: bool,
) -> FileInfo:
    first = block_of(content)
    # Not verified yet: a one-chunk file's block is checked against its id where it is opened.
    first_data = None if first is None else await blocks.get(first, verify=False)
    ref = decode_content(content, size, first_data)
    mtime_ns = mtime_ms * 1_000_000
    if ref.kind is RefKind.CHUNK and first_data is not None:
        # One chunk: verify (block id), open (checked against its chunk id, which is the file's
        # content hash) and write in one hop to the executor.
        return await executor.run(
            _open_and_write, fs, path, ref, first_data, crypto, mtime_ns, expect, executable
        )
    if first is not None and first_data is not None:
        await _verify(first, first_data, executor)
        blocks.keep(first, first_data)  # the manifest, read again by read_version below
    chunks = read_version(
        ref,
        blocks,
        crypto.share_keys,
        crypto.keyring,
        executor=executor.as_pool(),  # type: ignore[arg-type]
    )
    return await _write(fs, path, chunks, size, mtime_ns, executor, expect, executable)


def _open_and_write(
    fs: FileSystem,
    path: str,
    ref: FileRef,
    sealed: bytes,
    crypto: ShareCrypto,
    mtime_ns: int,
    expect: Expectation,
    executable: bool,
) -> FileInfo:
    try:
        plain = open_chunk(
            crypto.share_keys,
            crypto.keyring,
            sealed,
            chunk_id=ChunkId(ref.content_hash),
            block_id=ref.block_id,
        )
    except StorageError as exc:
        raise IntegrityError(f"a block does not open to the version's content: {exc}") from exc
    if len(plain) != ref.size:
        raise IntegrityError(f"a version of {ref.size} bytes came out as {len(plain)}")
    return fs.write_atomic(path, plain, mtime_ns=mtime_ns, executable=executable, expect=expect)


async def _verify(block_id: bytes, data: bytes, executor: Executor) -> None:
    try:
        await executor.run(verify_block_id, BlockId(block_id), data)
    except StorageError as exc:
        raise IntegrityError(f"the relay sent wrong bytes for a block: {exc}") from exc


def _pull(chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """Feed an async stream of chunks to a blocking writer running in a worker thread."""
    while True:
        future = asyncio.run_coroutine_threadsafe(anext(chunks), loop)  # type: ignore[arg-type]
        try:
            yield future.result()
        except StopAsyncIteration:
            return
