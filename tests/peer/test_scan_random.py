"""Seeded random edits on a MemFileSystem: after each scan is recorded, the index describes the
folder exactly, and an immediate rescan finds nothing (the scanner converges)."""

from __future__ import annotations

import random

import blake3
import pytest

from peer.fs import FsError, MemFileSystem
from peer.local.index import LocalIndex, SyncState
from peer.local.scan import Scanner, hash_link, record_scan
from seams import InlineExecutor
from tests.peer.helpers import FakeClock

DIRS = ["", "a", "a/b", "c"]
FILES = ["f", "g", "h.txt", "H.TXT", "k"]


def mutate(fs: MemFileSystem, rng: random.Random, n: int) -> None:
    d = rng.choice(DIRS)
    path = f"{d}/{rng.choice(FILES)}" if d else rng.choice(FILES)
    other_dir = rng.choice(DIRS)
    other = f"{other_dir}/{rng.choice(FILES)}" if other_dir else rng.choice(FILES)
    op = rng.random()
    try:
        if op < 0.35:
            fs.write_atomic(path, rng.choice([b"", b"same", f"v{n}".encode()]))
        elif op < 0.5:
            fs.mkdir(d or "c", parents=True)
        elif op < 0.65:
            fs.rename(path, other)
        elif op < 0.72:
            fs.rename(d or "a", rng.choice(["moved", "c/deeper", "a2"]))
        elif op < 0.82:
            fs.remove_file(path)
        elif op < 0.88:
            fs.trash(path, tag=f"t{n}")
        elif op < 0.94:
            fs.symlink(path, rng.choice(["f", "../outside", "a/b"]))
        else:
            fs.set_meta(path, executable=rng.random() < 0.5)
    except FsError:
        pass


def expected_index(fs: MemFileSystem) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for path, data in fs.snapshot().items():
        if path == ".drift" or path.startswith(".drift/"):
            continue
        if data is None:
            out[path] = None
        elif isinstance(data, str):
            out[path] = hash_link(data)
        else:
            out[path] = blake3.blake3(data).digest()
    return out


@pytest.mark.parametrize("run", range(8))
async def test_scans_converge_to_the_folder(run: int, seed: int | None) -> None:
    base = (seed if seed is not None else 11) * 100 + run
    rng = random.Random(base)
    clock = FakeClock()
    fs = MemFileSystem(seed=base, clock=clock, case_insensitive=run % 2 == 1)
    index = await LocalIndex.open(":memory:", InlineExecutor())
    scanner = Scanner(fs, index, executor=InlineExecutor(), clock=clock, stable_interval_s=0.01)
    for round_ in range(12):
        for n in range(rng.randint(1, 8)):
            mutate(fs, rng, round_ * 100 + n)
        clock.advance(3)
        await record_scan(index, await scanner.scan())
        live = {
            p: e.content_hash
            for p, e in (await index.entries()).items()
            if e.state not in (SyncState.DELETED, SyncState.IGNORED)
        }
        assert live == expected_index(fs), f"seed={base} round {round_}"
        clock.advance(3)
        again = await scanner.scan()
        assert again.changes == [], f"seed={base} round {round_}: {again.changes}"
    await index.close()
