"""A full disk while storing: a typed error, and nothing half-written left behind."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import dirstore
from storage.dirstore import DirectoryBlockStore
from storage.errors import StoreFullError
from storage.hashing import Buffer, block_id_of
from storage.ingest import ingest_file
from storage.keys import Keyring, SealingKey, ShareKeys
from storage.restore import restore_file


def try_mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture(params=["real tmpfs", "injected ENOSPC"])
def tiny_disk(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A 1 MiB filesystem: a real tmpfs where we may mount one (root), else ENOSPC injected
    through the store's write seam once 1 MiB has been written."""
    disk = tmp_path / "disk"
    if request.param == "real tmpfs" and try_mount_tmpfs(disk, "1m"):
        try:
            yield disk
        finally:
            subprocess.run(["umount", str(disk)], check=True)
        return
    disk.mkdir(exist_ok=True)
    budget = [1024 * 1024]
    real_write = dirstore.write_fully

    def write_until_full(fd: int, data: Buffer) -> None:
        if len(data) > budget[0]:
            os.write(fd, memoryview(data)[: budget[0]])
            budget[0] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        budget[0] -= len(data)
        real_write(fd, data)

    monkeypatch.setattr(dirstore, "write_fully", write_until_full)
    yield disk


def temp_files(store: DirectoryBlockStore) -> list[str]:
    return os.listdir(store.root / "tmp")


async def test_full_disk_raises_and_keeps_every_stored_block_whole(tiny_disk: Path) -> None:
    store = DirectoryBlockStore(tiny_disk / "store", fsync=True)
    stored = []

    async def fill() -> None:
        for n in range(20):
            data = os.urandom(200_000) + n.to_bytes(4, "big")
            await store.put(block_id_of(data), data)
            stored.append((block_id_of(data), data))

    with pytest.raises(StoreFullError, match="disk is full"):
        await fill()
    assert 1 <= len(stored) < 20
    assert temp_files(store) == []
    for block_id, data in stored:
        assert await store.get(block_id) == data
    assert sorted([b async for b in store.iter_ids()]) == sorted(b for b, _ in stored)


async def test_ingest_into_a_full_store_fails_cleanly_and_restores_what_it_had(
    tiny_disk: Path, tmp_path: Path, share: ShareKeys, key: SealingKey, keyring: Keyring
) -> None:
    store = DirectoryBlockStore(tiny_disk / "store", fsync=True)
    small = tmp_path / "small"
    small.write_bytes(b"fits easily")
    kept = await ingest_file(small, store, share, key)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    with pytest.raises(StoreFullError):
        await ingest_file(big, store, share, key)
    assert temp_files(store) == []
    await restore_file(kept.ref, store, share, keyring, tmp_path / "restored")
    assert (tmp_path / "restored").read_bytes() == b"fits easily"
