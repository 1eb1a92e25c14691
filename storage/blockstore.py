"""The block store seam: content-addressed, write-once, verified.

A block store holds sealed blocks under their block id (the SHA-256 of their bytes). ``put`` is
idempotent and refuses bytes that do not hash to the id; ``get`` verifies before it returns; there
is no delete (history is kept for good in this version). The interface is async because the relay
and the peer call it from their event loops; the blocking work of a backend runs in a worker thread
through an injected executor (``None``: asyncio's default executor; a simulation passes an inline
one), so the caller's loop never blocks on a disk or on boto3.
"""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from concurrent.futures import Executor
from typing import Protocol, TypeVar

from storage.errors import BlockTooLargeError
from storage.hashing import BlockId, Buffer, check_block_id, verify_block_id
from storage.sealing import MAX_BLOCK_SIZE

T = TypeVar("T")

# How many block ids one worker-thread hop of iter_ids carries.
_ID_BATCH = 1024


class BlockSink(Protocol):
    """What ingest needs of a store (a BlockStore, or a peer's relay client)."""

    async def has_many(self, block_ids: Iterable[BlockId]) -> AbstractSet[bytes]: ...

    async def put(
        self, block_id: BlockId, data: bytes | bytearray, *, verify: bool = True
    ) -> bool: ...


class BlockSource(Protocol):
    """What restore needs of a store (a BlockStore, a LAN peer, a relay client, a fallback)."""

    async def get(self, block_id: BlockId) -> bytes: ...


def check_upload(block_id: bytes, data: Buffer) -> BlockId:
    """What every store checks before it stores anything: the size limit and the id."""
    bid = check_block_id(block_id)
    if len(data) > MAX_BLOCK_SIZE:
        raise BlockTooLargeError(
            f"block {bid.hex()} is {len(data)} bytes; the limit is {MAX_BLOCK_SIZE}"
        )
    verify_block_id(bid, data)
    return bid


class BlockStore(ABC):
    """Async block store. Backends implement the blocking ``_…_sync`` methods."""

    #: Blocks a put_many/get_many moves at once.
    batch_concurrency = 8

    def __init__(self, executor: Executor | None = None) -> None:
        self._executor = executor

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def has(self, block_id: BlockId) -> bool:
        return block_id in await self.has_many([block_id])

    async def has_many(self, block_ids: Iterable[BlockId]) -> set[BlockId]:
        """The subset of ``block_ids`` this store holds."""
        ids = [check_block_id(b) for b in block_ids]
        if not ids:
            return set()
        return await self._run(self._has_many_sync, ids)

    async def put(self, block_id: BlockId, data: Buffer, *, verify: bool = True) -> bool:
        """Store a block; True if it was new, False if the store already had it.

        ``verify=False`` skips re-hashing the bytes; only for an id this process just computed
        from these same bytes (the ingest pipeline, which got both from ``seal_block``).
        """
        check_block_id(block_id)
        # Hashing a 4 MiB block takes milliseconds: it belongs in the worker, not on the loop.
        return await self._run(self._put_checked, block_id, data, verify)

    def _put_checked(self, block_id: BlockId, data: Buffer, verify: bool) -> bool:
        if verify:
            check_upload(block_id, data)
        elif len(data) > MAX_BLOCK_SIZE:
            raise BlockTooLargeError(f"block of {len(data)} bytes exceeds {MAX_BLOCK_SIZE}")
        return self._put_sync(block_id, data)

    async def put_many(self, blocks: Iterable[tuple[BlockId, Buffer]]) -> set[BlockId]:
        """Store several blocks (a few at a time); returns the ids that were new."""
        pairs = list(blocks)
        stored = await self._bounded([functools.partial(self.put, b, d) for b, d in pairs])
        return {block_id for (block_id, _), new in zip(pairs, stored, strict=True) if new}

    async def get(self, block_id: BlockId) -> bytes:
        """A block's bytes, verified against its id; BlockNotFoundError if absent."""
        return await self._run(self._get_sync, check_block_id(block_id))

    async def get_many(self, block_ids: Iterable[BlockId]) -> dict[BlockId, bytes]:
        """Several blocks (fetched a few at a time), each verified; the first error wins."""
        ids = list(dict.fromkeys(block_ids))
        found = await self._bounded([functools.partial(self.get, b) for b in ids])
        return dict(zip(ids, found, strict=True))

    async def _bounded(self, calls: list[Callable[[], Awaitable[T]]]) -> list[T]:
        gate = asyncio.Semaphore(self.batch_concurrency)

        async def one(call: Callable[[], Awaitable[T]]) -> T:
            async with gate:
                return await call()

        tasks = [asyncio.ensure_future(one(c)) for c in calls]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def iter_ids(self) -> AsyncIterator[BlockId]:
        """Every block id in the store, in no particular order (for operations and audits)."""
        ids = self._iter_ids_sync()
        while True:
            batch = await self._run(_take, ids, _ID_BATCH)
            for block_id in batch:
                yield block_id
            if len(batch) < _ID_BATCH:
                return

    async def close(self) -> None:
        await self._run(self._close_sync)

    @abstractmethod
    def _has_many_sync(self, block_ids: list[BlockId]) -> set[BlockId]: ...

    @abstractmethod
    def _put_sync(self, block_id: BlockId, data: Buffer) -> bool: ...

    @abstractmethod
    def _get_sync(self, block_id: BlockId) -> bytes: ...

    @abstractmethod
    def _iter_ids_sync(self) -> Iterator[BlockId]: ...

    def _close_sync(self) -> None:
        return None


def _take(it: Iterator[T], n: int) -> list[T]:
    out: list[T] = []
    for item in it:
        out.append(item)
        if len(out) >= n:
            break
    return out
