"""Ingest and restore: round trips, dedup, determinism, bounded memory, and bad stores."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import blake3
import pytest

from storage.blockstore import BlockStore
from storage.chunking import ChunkingParams
from storage.dirstore import DirectoryBlockStore
from storage.errors import (
    BlockAuthenticationError,
    BlockIdMismatchError,
    BlockNotFoundError,
    ChunkIdMismatchError,
    ContentMismatchError,
    SourceError,
)
from storage.hashing import chunk_id_of
from storage.ingest import ingest_file, ingest_stream
from storage.keys import Keyring, SealingKey, ShareKeys
from storage.manifest import FileRef, Manifest, PartEntry, PartsManifest, RefKind, seal_manifest
from storage.restore import read_version, restore_file

SMALL = ChunkingParams(min_size=256, avg_size=1024, max_size=4096)
MiB = 1024 * 1024


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def temp_files_in(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if "drift-tmp" in p.name]


def noise(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


class GeneratedReader:
    """A large, deterministic, incompressible file that never exists on disk."""

    def __init__(self, size: int, label: bytes = b"driftsync generated") -> None:
        self.size = size
        self.pos = 0
        self._xof = blake3.blake3(label)

    def readinto(self, buf: memoryview) -> int:
        n = min(len(buf), self.size - self.pos)
        if n > 0:
            buf[:n] = self._xof.digest(length=n, seek=self.pos)
            self.pos += n
        return n


@pytest.mark.parametrize("size", [0, 1, 5000, 256 * 1024, 300 * 1024, 9 * MiB + 17])
async def test_round_trip_through_every_store(
    store: BlockStore,
    share: ShareKeys,
    key: SealingKey,
    keyring: Keyring,
    tmp_path: Path,
    size: int,
) -> None:
    src = write(tmp_path / "src", noise(size, size))
    result = await ingest_file(src, store, share, key)
    expected_kind = {0: RefKind.EMPTY, 1: RefKind.CHUNK, 5000: RefKind.CHUNK}.get(
        size, RefKind.MANIFEST if size > 4 * MiB else RefKind.CHUNK
    )
    assert result.ref.kind is expected_kind
    assert result.ref.size == size
    assert (result.manifest is None) == (expected_kind is not RefKind.MANIFEST)
    stats = await restore_file(result.ref, store, share, keyring, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    assert stats.bytes_written == size
    assert temp_files_in(tmp_path) == []


async def test_one_chunk_file_ref_is_its_chunk_id(
    dir_store: DirectoryBlockStore, share: ShareKeys, key: SealingKey, tmp_path: Path
) -> None:
    data = b"a small file\n"
    result = await ingest_file(write(tmp_path / "f", data), dir_store, share, key)
    assert result.ref.content_hash == chunk_id_of(share.chunk_id_key, data)


async def test_same_share_same_data_gives_the_same_blocks(
    tmp_path: Path, share: ShareKeys, other_share: ShareKeys, key: SealingKey
) -> None:
    src = write(tmp_path / "src", noise(7, 6 * MiB))
    a = DirectoryBlockStore(tmp_path / "a", fsync=False)
    b = DirectoryBlockStore(tmp_path / "b", fsync=False)
    c = DirectoryBlockStore(tmp_path / "c", fsync=False)
    first = await ingest_file(src, a, share, key)
    again = await ingest_file(src, b, share, key)
    other = await ingest_file(src, c, other_share, key)
    ids_a = {x async for x in a.iter_ids()}
    assert ids_a == {x async for x in b.iter_ids()}
    assert first.ref == again.ref
    assert ids_a.isdisjoint({x async for x in c.iter_ids()})
    assert first.manifest is not None
    assert other.manifest is not None
    assert [e.size for e in first.manifest.entries] != [e.size for e in other.manifest.entries]


async def test_dedup_within_a_share(
    dir_store: DirectoryBlockStore, share: ShareKeys, key: SealingKey, tmp_path: Path
) -> None:
    base = noise(8, 8 * MiB)
    first = await ingest_file(write(tmp_path / "a", base), dir_store, share, key)
    copy = await ingest_file(write(tmp_path / "b", base), dir_store, share, key)
    assert copy.stats.new_blocks == 0
    assert copy.stats.reused_blocks == first.stats.new_blocks
    edited = base[: 4 * MiB] + b"!" + base[4 * MiB :]
    edit = await ingest_file(write(tmp_path / "c", edited), dir_store, share, key)
    assert 1 <= edit.stats.new_blocks <= 3  # one or two data blocks, one manifest
    repeated = await ingest_file(write(tmp_path / "d", bytes(12 * MiB)), dir_store, share, key)
    assert repeated.stats.chunks == 3
    assert repeated.stats.new_blocks == 2


async def test_ingest_and_restore_use_bounded_memory(
    dir_store: DirectoryBlockStore, share: ShareKeys, key: SealingKey, keyring: Keyring
) -> None:
    size = 96 * MiB
    tracemalloc.start()
    try:
        result = await ingest_stream(GeneratedReader(size), dir_store, share, key, max_in_flight=2)
        _, ingest_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        total = 0
        async for chunk in read_version(result.ref, dir_store, share, keyring, max_in_flight=2):
            total += len(chunk)
        _, restore_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    # Chunks average 1 MiB (at most 4): a handful in flight, never the 96 MiB file.
    assert ingest_peak < 48 * MiB, ingest_peak
    assert restore_peak < 48 * MiB, restore_peak


async def test_missing_block_fails_restore_and_leaves_nothing(
    tmp_path: Path, share: ShareKeys, key: SealingKey, keyring: Keyring
) -> None:
    full = DirectoryBlockStore(tmp_path / "full", fsync=False)
    result = await ingest_file(write(tmp_path / "src", noise(9, 6 * MiB)), full, share, key)
    partial = DirectoryBlockStore(tmp_path / "partial", fsync=False)
    assert result.ref.block_id is not None
    assert result.manifest is not None
    await partial.put(result.ref.block_id, await full.get(result.ref.block_id))
    await partial.put(
        result.manifest.entries[0].block_id, await full.get(result.manifest.entries[0].block_id)
    )
    dest = write(tmp_path / "dest", b"previous version")
    with pytest.raises(BlockNotFoundError):
        await restore_file(result.ref, partial, share, keyring, dest)
    assert dest.read_bytes() == b"previous version"
    assert temp_files_in(tmp_path) == []


async def test_manifest_pointing_at_another_shares_blocks_is_rejected(
    dir_store: DirectoryBlockStore,
    share: ShareKeys,
    other_share: ShareKeys,
    key: SealingKey,
    keyring: Keyring,
    tmp_path: Path,
) -> None:
    theirs = await ingest_file(
        write(tmp_path / "src", noise(10, 6 * MiB)), dir_store, other_share, key
    )
    assert theirs.manifest is not None
    forged = Manifest(theirs.ref.size, theirs.ref.content_hash, theirs.manifest.entries)
    sealed = seal_manifest(share, key, forged)
    await dir_store.put(sealed.block_id, sealed.data)
    ref = FileRef(RefKind.MANIFEST, forged.file_size, forged.content_hash, sealed.block_id)
    with pytest.raises(BlockAuthenticationError):
        await restore_file(ref, dir_store, share, keyring, tmp_path / "out")
    assert not (tmp_path / "out").exists()


async def test_corrupt_block_on_disk_is_caught(
    dir_store: DirectoryBlockStore,
    share: ShareKeys,
    key: SealingKey,
    keyring: Keyring,
    tmp_path: Path,
) -> None:
    result = await ingest_file(write(tmp_path / "src", noise(11, 6 * MiB)), dir_store, share, key)
    assert result.manifest is not None
    victim = dir_store.path_of(result.manifest.entries[1].block_id)
    damaged = bytearray(victim.read_bytes())
    damaged[1000] ^= 0xFF
    victim.write_bytes(bytes(damaged))
    with pytest.raises(BlockIdMismatchError):
        await restore_file(result.ref, dir_store, share, keyring, tmp_path / "out")
    assert not (tmp_path / "out").exists()


async def test_ref_that_disagrees_with_its_manifest_is_rejected(
    dir_store: DirectoryBlockStore,
    share: ShareKeys,
    key: SealingKey,
    keyring: Keyring,
    tmp_path: Path,
) -> None:
    result = await ingest_file(write(tmp_path / "src", noise(12, 6 * MiB)), dir_store, share, key)
    wrong = FileRef(RefKind.MANIFEST, result.ref.size, bytes(32), result.ref.block_id)
    with pytest.raises(ContentMismatchError):
        await restore_file(wrong, dir_store, share, keyring, tmp_path / "out")
    small = await ingest_file(write(tmp_path / "small", b"tiny"), dir_store, share, key)
    lying = FileRef(RefKind.CHUNK, 4, bytes(32), small.ref.block_id)
    with pytest.raises(ChunkIdMismatchError):
        await restore_file(lying, dir_store, share, keyring, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


async def test_unreadable_source_is_a_source_error(
    dir_store: DirectoryBlockStore, share: ShareKeys, key: SealingKey, tmp_path: Path
) -> None:
    with pytest.raises(SourceError):
        await ingest_file(tmp_path / "does-not-exist", dir_store, share, key)


async def test_a_new_epoch_seals_anew_and_restores_with_the_keyring(
    dir_store: DirectoryBlockStore, share: ShareKeys, keyring: Keyring, tmp_path: Path
) -> None:
    data = noise(13, 3 * MiB)
    await ingest_file(write(tmp_path / "a", data), dir_store, share, keyring[1])
    later = await ingest_file(write(tmp_path / "b", data), dir_store, share, keyring[2])
    # A new epoch seals anew (what is written after a removal must be unreadable to the removed).
    assert later.stats.new_blocks == later.stats.chunks + 1
    await restore_file(later.ref, dir_store, share, keyring, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


class FailingReader(GeneratedReader):
    """Reads fine for a while, then the disk fails."""

    def readinto(self, buf: memoryview) -> int:
        if self.pos > 6 * MiB:
            raise OSError(5, "Input/output error")
        return super().readinto(buf)


@pytest.mark.timeout(30)
async def test_read_error_mid_file_is_a_source_error_not_a_hang(
    dir_store: DirectoryBlockStore, share: ShareKeys, key: SealingKey
) -> None:
    with pytest.raises(SourceError, match="Input/output error"):
        await ingest_stream(FailingReader(64 * MiB), dir_store, share, key, name="flaky")


@pytest.mark.parametrize("chunks_per_part", [2, 3, 7])
async def test_large_files_are_stored_in_parts(
    dir_store: DirectoryBlockStore,
    share: ShareKeys,
    key: SealingKey,
    keyring: Keyring,
    tmp_path: Path,
    chunks_per_part: int,
) -> None:
    # Small chunks and small parts stand in for a file of more than 58,253 one-MiB chunks.
    data = noise(14, 60_000)
    src = write(tmp_path / "src", data)
    result = await ingest_file(
        src, dir_store, share, key, params=SMALL, chunks_per_part=chunks_per_part
    )
    assert isinstance(result.manifest, PartsManifest)
    assert sum(p.size for p in result.manifest.parts) == len(data)
    assert len(result.manifest.parts) == -(-result.stats.chunks // chunks_per_part)
    assert result.manifest.block_ids() == [p.block_id for p in result.manifest.parts]
    await restore_file(result.ref, dir_store, share, keyring, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    again = await ingest_file(
        src, dir_store, share, key, params=SMALL, chunks_per_part=chunks_per_part
    )
    assert again.ref == result.ref
    assert again.stats.new_blocks == 0


async def test_a_file_of_exactly_one_part_has_a_plain_manifest(
    dir_store: DirectoryBlockStore, share: ShareKeys, key: SealingKey, tmp_path: Path
) -> None:
    data = noise(15, 30_000)
    src = write(tmp_path / "src", data)
    plain = await ingest_file(src, dir_store, share, key, params=SMALL)
    assert isinstance(plain.manifest, Manifest)
    exact = await ingest_file(
        src, dir_store, share, key, params=SMALL, chunks_per_part=len(plain.manifest.entries)
    )
    assert exact.ref == plain.ref
    assert exact.stats.new_blocks == 0


async def test_a_part_that_does_not_match_its_entry_is_rejected(
    dir_store: DirectoryBlockStore,
    share: ShareKeys,
    key: SealingKey,
    keyring: Keyring,
    tmp_path: Path,
) -> None:
    result = await ingest_file(
        write(tmp_path / "src", noise(16, 40_000)), dir_store, share, key,
        params=SMALL, chunks_per_part=3,
    )  # fmt: skip
    assert isinstance(result.manifest, PartsManifest)
    first, second, *rest = result.manifest.parts
    swapped = PartsManifest(
        result.manifest.file_size,
        result.manifest.content_hash,
        (PartEntry(first.content_hash, second.block_id, first.epoch, first.size), second, *rest),
    )
    sealed = seal_manifest(share, key, swapped)
    await dir_store.put(sealed.block_id, sealed.data)
    ref = FileRef(RefKind.MANIFEST, swapped.file_size, swapped.content_hash, sealed.block_id)
    with pytest.raises(ContentMismatchError):
        await restore_file(ref, dir_store, share, keyring, tmp_path / "out")
