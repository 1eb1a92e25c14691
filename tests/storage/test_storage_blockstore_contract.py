"""One contract for every BlockStore: the local directory and S3 (real moto_server)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from storage.blockstore import BlockStore
from storage.errors import (
    BlockIdMismatchError,
    BlockNotFoundError,
    BlockTooLargeError,
    ParameterError,
)
from storage.hashing import BlockId, block_id_of
from storage.sealing import MAX_BLOCK_SIZE


def block(n: int, size: int = 5000) -> tuple[BlockId, bytes]:
    data = hashlib.sha256(str(n).encode()).digest() * (size // 32 + 1)
    data = data[:size]
    return block_id_of(data), data


async def test_put_then_get_returns_the_bytes(store: BlockStore) -> None:
    bid, data = block(1)
    assert await store.put(bid, data) is True
    assert await store.get(bid) == data
    assert await store.has(bid)


async def test_put_is_idempotent(store: BlockStore) -> None:
    bid, data = block(2)
    assert await store.put(bid, data) is True
    assert await store.put(bid, data) is False
    assert await store.get(bid) == data
    assert [b async for b in store.iter_ids()] == [bid]


async def test_put_with_wrong_id_stores_nothing(store: BlockStore) -> None:
    bid, data = block(3)
    other, _ = block(4)
    with pytest.raises(BlockIdMismatchError):
        await store.put(other, data)
    assert await store.has_many([bid, other]) == set()
    assert [b async for b in store.iter_ids()] == []


async def test_put_of_oversized_block_is_refused(store: BlockStore) -> None:
    data = bytes(MAX_BLOCK_SIZE + 1)
    with pytest.raises(BlockTooLargeError):
        await store.put(block_id_of(data), data)
    assert not await store.has(block_id_of(data))


async def test_get_of_missing_block_raises_not_found(store: BlockStore) -> None:
    bid, _ = block(5)
    with pytest.raises(BlockNotFoundError) as info:
        await store.get(bid)
    assert bid.hex() in str(info.value)


async def test_has_many_returns_exactly_the_stored_subset(store: BlockStore) -> None:
    blocks = [block(n, 100 + n) for n in range(12)]
    for bid, data in blocks[::2]:
        await store.put(bid, data)
    ids = [bid for bid, _ in blocks]
    assert await store.has_many(ids) == set(ids[::2])
    assert await store.has_many([]) == set()


async def test_put_many_get_many_and_iter_ids(store: BlockStore) -> None:
    blocks = [block(n, 64 + n) for n in range(7)]
    assert await store.put_many(blocks[:3]) == {bid for bid, _ in blocks[:3]}
    assert await store.put_many(blocks) == {bid for bid, _ in blocks[3:]}
    wanted = [bid for bid, _ in blocks]
    assert await store.get_many(wanted) == dict(blocks)
    assert sorted([b async for b in store.iter_ids()]) == sorted(wanted)


async def test_concurrent_puts_of_one_block_store_it_once(store: BlockStore) -> None:
    bid, data = block(6, 200_000)
    results = await asyncio.gather(*(store.put(bid, data) for _ in range(6)))
    assert results.count(True) >= 1
    assert await store.get(bid) == data
    assert [b async for b in store.iter_ids()] == [bid]


async def test_malformed_block_ids_are_refused(store: BlockStore) -> None:
    with pytest.raises(ParameterError):
        await store.get(BlockId(b"short"))
    with pytest.raises(ParameterError):
        await store.put(BlockId(b"x" * 31), b"data")


async def test_get_many_fails_with_the_missing_blocks_error(store: BlockStore) -> None:
    present, data = block(7)
    absent, _ = block(8)
    await store.put(present, data)
    with pytest.raises(BlockNotFoundError):
        await store.get_many([present, absent])
    assert await store.get_many([present, present]) == {present: data}
