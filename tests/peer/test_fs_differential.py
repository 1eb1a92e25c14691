"""MemFileSystem checked against reality: one seeded random sequence of operations on the real
disk and in memory must give the same outcomes (success or the same error type) and trees."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from peer.fs import FileKind, FileSystem, LocalError, MemFileSystem, OsFileSystem

NAMES = ["a", "b", "c", "d/e", "d", "a/x", "b/y", ".drift", "z"]


def tree(fs: FileSystem, path: str = "") -> dict[str, tuple[str, bytes | str | bool]]:
    out: dict[str, tuple[str, bytes | str | bool]] = {}
    for info in fs.list_dir(path):
        sub = f"{path}/{info.name}" if path else info.name
        if info.kind is FileKind.DIR:
            out[sub] = ("dir", True)
            out.update(tree(fs, sub))
        elif info.kind is FileKind.SYMLINK:
            out[sub] = ("symlink", fs.read_link(sub))
        else:
            out[sub] = (
                "file",
                fs.read_range(sub, 0, 1 << 20) + (b"+x" if info.executable else b""),
            )
    return out


def step(fs: FileSystem, rng: random.Random, n: int) -> str:
    a, b = rng.choice(NAMES), rng.choice(NAMES)
    op = rng.choice(
        [
            "write",
            "write",
            "mkdir",
            "mkdirp",
            "rename",
            "rename_replace",
            "remove",
            "rmdir",
            "trash",
            "symlink",
            "exec",
        ]
    )
    try:
        if op == "write":
            fs.write_atomic(a, f"{n}".encode(), executable=rng.random() < 0.2)
        elif op == "mkdir":
            fs.mkdir(a)
        elif op == "mkdirp":
            fs.mkdir(a, parents=True)
        elif op == "rename":
            fs.rename(a, b)
        elif op == "rename_replace":
            fs.rename(a, b, replace=True)
        elif op == "remove":
            fs.remove_file(a)
        elif op == "rmdir":
            fs.rmdir(a)
        elif op == "trash":
            fs.trash(a, tag=f"t{n % 2}")
        elif op == "symlink":
            fs.symlink(a, b)
        else:
            fs.set_meta(a, executable=rng.random() < 0.5)
    except LocalError as exc:
        return f"{op} {a} {b}: {type(exc).__name__}"
    return f"{op} {a} {b}: ok"


@pytest.mark.parametrize("run", range(12))
def test_memfs_behaves_like_the_disk(tmp_path: Path, run: int, seed: int | None) -> None:
    base = (seed if seed is not None else 7) * 1000 + run
    disk_root = tmp_path / "disk"
    disk_root.mkdir()
    disk, mem = OsFileSystem(disk_root), MemFileSystem(seed=base)
    rng_disk, rng_mem = random.Random(base), random.Random(base)
    for n in range(80):
        on_disk, in_mem = step(disk, rng_disk, n), step(mem, rng_mem, n)
        assert on_disk == in_mem, f"seed={base} step {n}"
    assert tree(disk) == tree(mem), f"seed={base}"
