"""Sizes that take a while: 10,000 small files and a 1 GiB file (run with --runslow)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.peer_sync.harness import make_device, running_relay, settle, share_between

MiB = 1 << 20


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_ten_thousand_small_files(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            await share_between(a, b)
            for i in range(10_000):
                folder = a.folder / f"dir{i % 100}"
                folder.mkdir(exist_ok=True)
                (folder / f"file{i}.txt").write_bytes(b"content %d\n" % i * (i % 7 + 1))
            await settle([a, b], rounds=2)
            assert b.files() == a.files()
            assert len(b.files()) == 10_000
        finally:
            await a.node.close()
            await b.node.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_one_gib_file(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            await share_between(a, b)
            digest = hashlib.sha256()
            with (a.folder / "big.bin").open("wb") as f:
                for _ in range(128):
                    piece = os.urandom(8 * MiB)
                    digest.update(piece)
                    f.write(piece)
            await settle([a, b], rounds=1)
            got = hashlib.sha256()
            with (b.folder / "big.bin").open("rb") as f:
                while piece := f.read(8 * MiB):
                    got.update(piece)
            assert got.digest() == digest.digest()
        finally:
            await a.node.close()
            await b.node.close()
