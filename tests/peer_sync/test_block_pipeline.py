"""The relay block pipeline of a device: batched uploads, background prefetch, checked bytes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from peer.engine.content import PREFETCH_BATCH, RelayBlocks
from peer.engine.transfer import download_file
from peer.errors import IntegrityError, RelayRefused
from peer.fs import MISSING
from peer.remote.link import RelayLink
from storage.sealing import BlockType, seal_block, seal_chunk
from tests.peer_sync.harness import Dev, make_device, running_relay, share_between


class CountingLink:
    """The device's real relay link, counting the block requests that pass through it."""

    def __init__(self, link: RelayLink) -> None:
        self.link = link
        self.batches = 0
        self.singles = 0

    async def get_blocks(self, share: str, block_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        self.batches += 1
        return await self.link.get_blocks(share, block_ids)

    async def get_block(self, share: str, block_id: bytes) -> bytes:
        self.singles += 1
        return await self.link.get_block(share, block_id)

    def __getattr__(self, name: str) -> object:
        return getattr(self.link, name)


async def upload_small_blocks(dev: Dev, share: str, count: int) -> dict[bytes, bytes]:
    sync = dev.node.share(share)
    crypto = sync.replica.crypto
    blocks: dict[bytes, bytes] = {}
    for i in range(count):
        sealed = seal_chunk(crypto.share_keys, crypto.sealing_key(0), os.urandom(100 + i))
        await sync.blocks.put(sealed.block.block_id, sealed.block.data)
        blocks[sealed.block.block_id] = bytes(sealed.block.data)
    await sync.blocks.flush()
    return blocks


async def test_prefetched_blocks_come_in_batches_and_each_get_takes_its_own(
    tmp_path: Path,
) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        sent = await upload_small_blocks(a, share, 3 * PREFETCH_BATCH + 5)
        link = CountingLink(b.node.link)
        blocks = RelayBlocks(link, share)  # type: ignore[arg-type]
        await blocks.prefetch(list(sent))
        got = await asyncio.gather(*(blocks.get(block_id) for block_id in sent))
        assert got == list(sent.values())
        assert (link.batches, link.singles) == (4, 0)
        assert not blocks.incoming
        assert not blocks.prefetched
        await a.node.close()
        await b.node.close()


async def test_a_failed_prefetch_costs_only_time(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        sent = await upload_small_blocks(a, share, 3)
        unknown = bytes(32)
        link = CountingLink(b.node.link)
        blocks = RelayBlocks(link, share)  # type: ignore[arg-type]
        await blocks.prefetch([*sent, unknown])  # the relay refuses the whole batch
        for block_id, data in sent.items():
            assert await blocks.get(block_id) == data
        assert link.singles == 3  # fetched one by one instead
        with pytest.raises(RelayRefused):
            await blocks.get(unknown)
        await a.node.close()
        await b.node.close()


async def test_wrong_bytes_for_a_one_chunk_file_are_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        text = b"one chunk of content, compressible " * 5000  # 175 kB: one chunk
        (a.folder / "one.txt").write_bytes(text)
        await a.sync()
        entry = a.node.share(share).tree.lookup("one.txt")
        assert entry is not None
        assert entry.version is not None
        content = entry.version.manifest
        sync = b.node.share(share)
        real = await sync.blocks.get(content[:32])
        crypto = sync.replica.crypto
        # Other bytes under the block's id, from a relay or a disk: tampered ones fail the AEAD;
        # the same chunk sealed otherwise (uncompressed) opens fine, and only the id catches it.
        tampered = real[:-1] + bytes([real[-1] ^ 1])
        other = seal_block(
            crypto.share_keys, crypto.sealing_key(0), BlockType.DATA, text, compress=False
        ).data
        assert bytes(other) != real
        for wrong in (tampered, bytes(other)):
            sync.blocks.prefetched[content[:32]] = wrong
            with pytest.raises(IntegrityError):
                await download_file(
                    sync.fs,
                    "one.txt",
                    content,
                    entry.version.size,
                    0,
                    sync.blocks,
                    crypto,
                    sync.executor,
                    MISSING,
                )
        assert not (b.folder / "one.txt").exists()
        assert [p.name for p in b.folder.iterdir() if p.name != ".drift"] == []
        await a.node.close()
        await b.node.close()
