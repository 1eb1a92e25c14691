"""Ingest benchmark: chunk + hash + compress + seal + store throughput, dedup, edits, memory.

Figures (names as in benchmarks/targets.toml ``[ingest.*]``, plus a few without targets):

* ``ingest_page_cache_mb_s``: a seeded dataset (2,000 small files 1–64 KiB, 200 medium
  256 KiB–8 MiB, 4 large 64–256 MiB; half compressible text, a few duplicate files) ingested from
  the page cache into a directory block store without fsync; ``ingest_fsync_mb_s`` the same with
  fsync per block; ``peak_rss_ingest_dataset_mb`` that ingest's peak RSS (child process).
* ``index_only_mb_s``: chunk boundaries + chunk ids of the same dataset (what a scanner pays).
* ``ingest_mb_per_cpu_s``, ``index_only_mb_per_cpu_s``: the same work per CPU-second, which
  other processes on a shared machine do not skew (wall-clock figures note the load average).
* ``dedup_ratio``: bytes ingested / plaintext bytes of the distinct chunks stored.
* ``edit_*_new_blocks``: blocks a re-ingest adds after one edit of a 256 MiB file (data blocks
  plus the new manifest block).
* ``peak_rss_{ingest,restore}_5gib_mb``: a 5 GiB file generated on the fly (never on disk as a
  source), ingested then restored to a real file, each in a child process; all of it deleted.

``--smoke`` runs the same phases on a few MiB in a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3

from benchmarks.harness import Bench, own_peak_rss_bytes, peak_rss_of, python_cmd
from storage.dirstore import DirectoryBlockStore
from storage.index import index_file
from storage.ingest import ingest_file, ingest_stream
from storage.keys import Keyring, SealingKey, ShareKeys
from storage.manifest import FileRef, Manifest
from storage.memory import tune_allocator
from storage.restore import restore_file

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024
MB = 1e6
# Concurrent files during a dataset ingest: small files keep both cores busy this way.
FILES_IN_FLIGHT = 4
# 32 symbols, most of them letters: about 5 bits of entropy a byte, so zstd shrinks it.
TEXT_TABLE = bytes((b"etaoinshrdlucmfwypvbgkjqxz .,\n\n "[i % 32]) for i in range(256))


def share_keys(seed: int) -> tuple[ShareKeys, SealingKey]:
    def derive(label: str) -> bytes:
        return blake3.blake3(f"benchmark {seed} {label}".encode()).digest()

    share = ShareKeys(b"benchmark share", derive("chunking"), derive("chunk-id"))
    return share, SealingKey(1, derive("epoch 1"))


def file_bytes(rng: random.Random, size: int, compressible: bool) -> bytes:
    # randbytes goes through one big int: keep each call well under 2**31 bits.
    data = b"".join(rng.randbytes(min(64 * MiB, size - at)) for at in range(0, size, 64 * MiB))
    return data.translate(TEXT_TABLE) if compressible else data


def make_dataset(root: Path, rng: random.Random, smoke: bool) -> list[Path]:
    """The seeded dataset; returns its files. About 1.5 GB in full, 12 MB in smoke mode."""
    small, medium, large = (40, 4, 1) if smoke else (2000, 200, 4)
    medium_max = 1 * MiB if smoke else 8 * MiB
    large_range = (4 * MiB, 8 * MiB) if smoke else (64 * MiB, 256 * MiB)
    sizes = (
        [rng.randint(1 * KiB, 64 * KiB) for _ in range(small)]
        + [rng.randint(256 * KiB, medium_max) for _ in range(medium)]
        + [rng.randint(*large_range) for _ in range(large)]
    )
    files: list[Path] = []
    for n, size in enumerate(sizes):
        path = root / f"d{n % 50:02d}" / f"f{n:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        # One file in twenty is a copy of an earlier one of its kind: real folders have those.
        if files and n < small + medium and rng.random() < 0.05:
            shutil.copyfile(rng.choice(files[-min(len(files), 50) :]), path)
        else:
            path.write_bytes(file_bytes(rng, size, compressible=rng.random() < 0.5))
        files.append(path)
    return files


async def ingest_all(files: Sequence[Path], store_dir: Path, seed: int, fsync: bool) -> dict:
    share, key = share_keys(seed)
    store = DirectoryBlockStore(store_dir, fsync=fsync)
    gate = asyncio.Semaphore(FILES_IN_FLIGHT)
    totals = {"bytes": 0, "chunks": 0, "new_blocks": 0, "new_block_bytes": 0}
    distinct: dict[bytes, int] = {}

    async def one(path: Path) -> None:
        async with gate:
            result = await ingest_file(path, store, share, key)
        totals["bytes"] += result.stats.bytes_read
        totals["chunks"] += result.stats.chunks
        totals["new_blocks"] += result.stats.new_blocks
        totals["new_block_bytes"] += result.stats.new_block_bytes
        if isinstance(result.manifest, Manifest):
            distinct.update((e.chunk_id, e.size) for e in result.manifest.entries)
        elif result.ref.size:
            distinct[result.ref.content_hash] = result.ref.size

    start, cpu = time.perf_counter(), cpu_seconds()
    await asyncio.gather(*(one(p) for p in files))
    totals["seconds"] = time.perf_counter() - start
    totals["cpu_seconds"] = cpu_seconds() - cpu
    totals["distinct_chunk_bytes"] = sum(distinct.values())
    await store.close()
    return totals


class GeneratedReader:
    """A deterministic file that is only ever generated: 8 MiB runs, half text, half noise."""

    RUN = 8 * MiB

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.pos, self.seed = size, 0, seed
        self._run = b""
        self._run_pos = 0

    def readinto(self, buf: memoryview) -> int:
        if self.pos >= self.size:
            return 0
        if self._run_pos >= len(self._run):
            index = self.pos // self.RUN
            # BLAKE3's XOF makes noise several times faster than random.randbytes, so the
            # generator does not hold back the ingest it feeds.
            noise = blake3.blake3(f"{self.seed}/{index}".encode()).digest(
                length=min(self.RUN, self.size - self.pos)
            )
            self._run = noise.translate(TEXT_TABLE) if index % 2 == 0 else noise
            self._run_pos = 0
        n = min(len(buf), len(self._run) - self._run_pos)
        buf[:n] = memoryview(self._run)[self._run_pos : self._run_pos + n]
        self._run_pos += n
        self.pos += n
        return n


def run_child(args: list[str]) -> int:
    """Phases measured in a process of their own (peak RSS is per process)."""
    mode, rest = args[0], args[1:]
    tune_allocator()  # as the peer and the CLI do at startup
    if mode == "ingest-dataset":
        listing, store_dir, out, seed = Path(rest[0]), Path(rest[1]), Path(rest[2]), int(rest[3])
        files = [Path(p) for p in json.loads(listing.read_text())]
        totals = asyncio.run(ingest_all(files, store_dir, seed, fsync=False))
        out.write_text(json.dumps({**totals, "peak_rss": own_peak_rss_bytes()}))
    elif mode == "ingest-stream":
        size, store_dir, out, seed = int(rest[0]), Path(rest[1]), Path(rest[2]), int(rest[3])
        share, key = share_keys(seed)

        async def ingest() -> dict:
            store = DirectoryBlockStore(store_dir, fsync=False)
            start = time.perf_counter()
            result = await ingest_stream(GeneratedReader(size, seed), store, share, key)
            return {"ref": result.ref.to_dict(), "seconds": time.perf_counter() - start}

        report = asyncio.run(ingest())
        out.write_text(json.dumps({**report, "peak_rss": own_peak_rss_bytes()}))
    elif mode == "restore":
        ref_file, store_dir, dest, out = (Path(p) for p in rest[:4])
        share, key = share_keys(int(rest[4]))
        ref = FileRef.from_dict(json.loads(ref_file.read_text())["ref"])
        store = DirectoryBlockStore(store_dir, fsync=False)
        start = time.perf_counter()
        asyncio.run(restore_file(ref, store, share, Keyring([key]), dest, fsync=False))
        seconds = time.perf_counter() - start
        dest.unlink()
        out.write_text(json.dumps({"seconds": seconds, "peak_rss": own_peak_rss_bytes()}))
    else:
        print(f"unknown child mode {mode!r}", file=sys.stderr)
        return 2
    return 0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def index_all(files: Sequence[Path], seed: int) -> tuple[float, float]:
    """Bytes per wall second and per CPU second (the latter does not depend on other load)."""
    share, _ = share_keys(seed)
    start, cpu = time.perf_counter(), cpu_seconds()
    with ThreadPoolExecutor(2) as pool:
        total = sum(ix.size for ix in pool.map(lambda p: index_file(p, share), files))
    return total / (time.perf_counter() - start), total / (cpu_seconds() - cpu)


async def edit_new_blocks(work: Path, base: bytes, edited: bytes, seed: int) -> int:
    share, key = share_keys(seed)
    store_dir = work / "edit-store"
    shutil.rmtree(store_dir, ignore_errors=True)
    store = DirectoryBlockStore(store_dir, fsync=False)
    (work / "edit-base").write_bytes(base)
    (work / "edit-new").write_bytes(edited)
    await ingest_file(work / "edit-base", store, share, key)
    result = await ingest_file(work / "edit-new", store, share, key)
    shutil.rmtree(store_dir)
    return result.stats.new_blocks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.ingest", description=__doc__)
    parser.add_argument("--seed", type=int, default=1, help="dataset seed (default 1)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch space (default: tmp)")
    bench, args = Bench.from_argv("ingest", argv, parser)
    if args.child:
        return run_child(args.child)
    print(f"SEED={args.seed}", flush=True)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="drift-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        files = make_dataset(work / "data", rng, bench.smoke)
        total = sum(p.stat().st_size for p in files)
        print(f"dataset: {len(files)} files, {total / MB:.1f} MB in {work / 'data'}", flush=True)

        wall_speed, cpu_speed = index_all(files, args.seed)
        bench.figure("index_only_mb_s", wall_speed / MB, "MB/s", "2 threads")
        bench.figure("index_only_mb_per_cpu_s", cpu_speed / MB, "MB/cpu-s", "load-independent")

        listing = work / "files.json"
        listing.write_text(json.dumps([str(p) for p in files]))
        out = work / "ingest.json"
        code, _ = peak_rss_of(
            python_cmd(
                "-m", "benchmarks.ingest", "--child", "ingest-dataset",
                str(listing), str(work / "store-a"), str(out), str(args.seed),
            )
        )  # fmt: skip
        if code != 0:
            print("dataset ingest child failed", file=sys.stderr)
            return 1
        totals = json.loads(out.read_text())
        bench.figure(
            "ingest_page_cache_mb_s",
            totals["bytes"] / totals["seconds"] / MB,
            "MB/s",
            f"{len(files)} files, {FILES_IN_FLIGHT} at a time, no fsync, "
            f"load avg {os.getloadavg()[0]:.1f}",
        )
        bench.figure(
            "ingest_mb_per_cpu_s",
            totals["bytes"] / totals["cpu_seconds"] / MB,
            "MB/cpu-s",
            "load-independent; 2 cores give up to twice this",
        )
        bench.figure("peak_rss_ingest_dataset_mb", totals["peak_rss"] / MB, "MB", "VmHWM")
        bench.figure(
            "dedup_ratio",
            totals["bytes"] / totals["distinct_chunk_bytes"],
            "x",
            f"{totals['new_blocks']} blocks, {totals['new_block_bytes'] / MB:.0f} MB sealed",
        )
        shutil.rmtree(work / "store-a")

        fsynced = asyncio.run(ingest_all(files, work / "store-b", args.seed, fsync=True))
        bench.figure(
            "ingest_fsync_mb_s", fsynced["bytes"] / fsynced["seconds"] / MB, "MB/s", "fsync/block"
        )
        shutil.rmtree(work / "store-b")
        shutil.rmtree(work / "data")

        size = bench.pick(smoke=8 * MiB, full=256 * MiB)
        base = file_bytes(random.Random(args.seed + 1), size, compressible=False)
        mid = size // 2
        edits = {
            "edit_insert_1b_new_blocks": lambda b: b[:mid] + b"!" + b[mid:],
            "edit_append_1mib_new_blocks": lambda b: b + file_bytes(rng, MiB, compressible=False),
            "edit_overwrite_4kib_new_blocks": lambda b: (
                b[:mid] + bytes(4 * KiB) + b[mid + 4 * KiB :]
            ),
        }
        for name, edit in edits.items():
            new = asyncio.run(edit_new_blocks(work, base, edit(base), args.seed))
            bench.figure(name, new, "blocks", f"of a {size // MiB} MiB file, manifest included")
        del base

        big = bench.pick(smoke=64 * MiB, full=5 * GiB)
        ref_file, restore_out = work / "big-ref.json", work / "restore.json"
        code, _ = peak_rss_of(
            python_cmd(
                "-m", "benchmarks.ingest", "--child", "ingest-stream",
                str(big), str(work / "store-big"), str(ref_file), str(args.seed),
            )
        )  # fmt: skip
        if code != 0:
            print("big ingest child failed", file=sys.stderr)
            return 1
        report = json.loads(ref_file.read_text())
        speed = big / report["seconds"] / MB
        note = f"{big / GiB:g} GiB generated, {speed:.0f} MB/s, VmHWM"
        bench.figure("peak_rss_ingest_5gib_mb", report["peak_rss"] / MB, "MB", note)
        code, _ = peak_rss_of(
            python_cmd(
                "-m", "benchmarks.ingest", "--child", "restore",
                str(ref_file), str(work / "store-big"), str(work / "restored"),
                str(restore_out), str(args.seed),
            )
        )  # fmt: skip
        if code != 0:
            print("big restore child failed", file=sys.stderr)
            return 1
        report = json.loads(restore_out.read_text())
        speed = big / report["seconds"] / MB
        note = f"{big / GiB:g} GiB to a file, {speed:.0f} MB/s, VmHWM"
        bench.figure("peak_rss_restore_5gib_mb", report["peak_rss"] / MB, "MB", note)
    return bench.finish()


if __name__ == "__main__":
    sys.exit(main())
