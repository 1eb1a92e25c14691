"""Sync benchmark: two devices and a relay on loopback, the figures a user compares with Syncthing.

The relay runs as its own process (``python -m relay serve``, SQLite + block directory). Devices
run in this process (``peer.engine.DeviceNode``), except for the peak-RSS figure, where each
device is a ``drift run --once`` process of its own so its high-water mark is its own.

Figures (names as in targets.toml ``[sync.*]``):
- ``small_files_2000_s``: 2,000 small files (≈60 MB) written on A until all are on B;
- ``file_1gib_s``: one 1 GiB file, A → B;
- ``change_p50_ms`` / ``change_p95_ms``: both daemons running (watchers, WebSocket), a small
  write on A until the file is complete on B;
- ``insert_1b_256mib_uploaded_blocks``: blocks uploaded after inserting 1 byte into 256 MiB;
- ``peak_rss_5gib_mb``: the larger peak RSS of the uploading and the downloading process, 5 GiB;
- ``rescan_unchanged_100k_s``: a pass over an unchanged 100,000-file folder.
- ``restart_100k_warm_s`` / ``restart_100k_replay_s``: opening a share whose tree holds 100,000
  files (recorded 200 to an update, as a first scan does) after a clean shutdown, from the saved
  tree (warm start), and by replaying every stored update (no saved tree).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from benchmarks.harness import Bench, peak_rss_of, python_cmd
from crdt.results import FileContent
from peer.device.config import DeviceConfig
from peer.device.home import Home
from peer.device.identity import init_identity
from peer.device.store import ShareStore
from peer.engine.node import DeviceNode
from peer.engine.replica import ShareReplica
from peer.engine.shares import InviteCode, create_share, invite_member, join_share
from peer.engine.warm import snapshot_path
from protocol.chain import Role
from seams import SystemClock
from seams.random import OsRandom

MiB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def relay_process(workdir: Path) -> Iterator[str]:
    port = _free_port()
    log = open(workdir / "relay.log", "wb")  # noqa: SIM115 - closed below
    config = workdir / "relay.toml"
    # A benchmark writes far more blocks a minute than the relay's per-user rate limit allows.
    config.write_text(
        f'data_dir = "{workdir / "relay"}"\nwrites_per_minute_per_user = 1000000000\n'
    )
    proc = subprocess.Popen(
        python_cmd("-m", "relay", "serve", "--config", str(config), "--port", str(port)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("relay did not start; see relay.log") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


class Pair:
    """Two users' devices sharing one folder."""

    def __init__(self, root: Path, url: str, label: str) -> None:
        self.root = root / label
        self.url = url
        self.homes = [Home(self.root / "home-a"), Home(self.root / "home-b")]
        self.folders = [self.root / "a", self.root / "b"]
        self.nodes: list[DeviceNode] = []
        self.share = ""

    async def setup(self, *, watch: bool = False) -> None:
        clock, rng = SystemClock(), OsRandom()
        for i, home in enumerate(self.homes):
            init_identity(home, f"dev{i}", clock, rng)
            config = DeviceConfig(device_name=f"dev{i}", relay_url=self.url, watch_delay_ms=10)
            config.lan_enabled = False  # the relay path is what this measures
            config.save(home.config)
            self.nodes.append(DeviceNode(home, watch=watch))
        a, b = self.nodes
        self.share = await create_share(
            a.home,
            a.config,
            a.device,
            a.link,
            self.folders[0],
            name="bench",
            clock=clock,
            rng=rng,
        )
        code = await invite_member(
            a.home,
            a.config,
            a.device,
            a.link,
            self.share,
            b.device.certificate.user_key,
            Role.EDITOR,
            clock=clock,
            rng=rng,
        )
        await join_share(
            b.home, b.config, b.device, b.link, InviteCode.from_text(code), self.folders[1]
        )
        for node in self.nodes:
            await node.sync_once()

    async def transfer(self) -> tuple[float, str]:
        """Seconds from A's pass starting to B's ending, and how they split."""
        start = time.perf_counter()
        await self.nodes[0].sync_once()
        middle = time.perf_counter()
        await self.nodes[1].sync_once()
        end = time.perf_counter()
        return end - start, f"up {middle - start:.1f} s, down {end - middle:.1f} s"

    async def close(self) -> None:
        for node in self.nodes:
            await node.close()


def write_random(path: Path, size: int, rng: random.Random) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            piece = min(left, 8 * MiB)
            f.write(rng.randbytes(piece))
            left -= piece


async def small_files(bench: Bench, root: Path, url: str, rng: random.Random) -> None:
    count = bench.pick(smoke=50, full=2000)
    pair = Pair(root, url, "small")
    await pair.setup()
    total = 0
    for i in range(count):
        folder = pair.folders[0] / f"d{i % 20}"
        folder.mkdir(exist_ok=True)
        size = rng.randint(1000, 59000)
        (folder / f"f{i}.bin").write_bytes(rng.randbytes(size))
        total += size
    seconds, split = await pair.transfer()
    arrived = sum(1 for p in pair.folders[1].rglob("*.bin"))
    await pair.close()
    assert arrived == count, f"only {arrived} of {count} files arrived"
    bench.figure(
        "small_files_2000_s", seconds, "s", f"{count} files, {total / 1e6:.0f} MB; {split}"
    )


async def big_file(bench: Bench, root: Path, url: str, rng: random.Random) -> None:
    size = bench.pick(smoke=8 * MiB, full=1024 * MiB)
    pair = Pair(root, url, "big")
    await pair.setup()
    write_random(pair.folders[0] / "big.bin", size, rng)
    seconds, split = await pair.transfer()
    ok = (pair.folders[1] / "big.bin").stat().st_size == size
    await pair.close()
    assert ok
    bench.figure("file_1gib_s", seconds, "s", f"{size / MiB:.0f} MiB, random bytes; {split}")


async def change_latency(bench: Bench, root: Path, url: str) -> None:
    rounds = bench.pick(smoke=5, full=40)
    pair = Pair(root, url, "latency")
    await pair.setup(watch=True)
    stop = asyncio.Event()
    runs = [asyncio.create_task(n.run(stop)) for n in pair.nodes]
    await asyncio.sleep(1.0)
    samples: list[float] = []
    try:
        for i in range(rounds):
            body = f"change {i} ".encode() * 10
            target = pair.folders[1] / "note.txt"
            start = time.perf_counter()
            (pair.folders[0] / "note.txt").write_bytes(body)
            while True:
                with contextlib.suppress(OSError):
                    if target.read_bytes() == body:
                        break
                if time.perf_counter() - start > 30:
                    raise RuntimeError("a change did not arrive within 30 s")
                await asyncio.sleep(0.002)
            samples.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*runs)
        await pair.close()
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    bench.figure("change_p50_ms", statistics.median(samples), "ms", f"{rounds} writes")
    bench.figure("change_p95_ms", p95, "ms", f"{rounds} writes")


async def insert_one_byte(bench: Bench, root: Path, url: str, rng: random.Random) -> None:
    size = bench.pick(smoke=16 * MiB, full=256 * MiB)
    pair = Pair(root, url, "insert")
    await pair.setup()
    path = pair.folders[0] / "big.bin"
    write_random(path, size, rng)
    await pair.nodes[0].sync_once()
    blocks = pair.nodes[0].share(pair.share).blocks
    before = blocks.uploaded_blocks
    data = bytearray(path.read_bytes())
    data[size // 2 : size // 2] = b"!"
    path.write_bytes(bytes(data))
    await pair.nodes[0].sync_once()
    uploaded = blocks.uploaded_blocks - before
    await pair.close()
    bench.figure(
        "insert_1b_256mib_uploaded_blocks",
        uploaded,
        "blocks",
        f"{size / MiB:.0f} MiB file, manifest included",
    )


async def peak_rss(bench: Bench, root: Path, url: str, rng: random.Random) -> None:
    size = bench.pick(smoke=64 * MiB, full=5 * 1024 * MiB)
    pair = Pair(root, url, "rss")
    await pair.setup()
    await pair.close()
    write_random(pair.folders[0] / "huge.bin", size, rng)
    peaks = []
    for home in pair.homes:
        code, peak = peak_rss_of(
            python_cmd("-m", "peer.cli", "--home", str(home.root), "run", "--once")
        )
        assert code == 0, f"drift run --once exited with {code}"
        peaks.append(peak)
    assert (pair.folders[1] / "huge.bin").stat().st_size == size
    bench.figure(
        "peak_rss_5gib_mb",
        max(peaks) / 1e6,
        "MB",
        f"{size / MiB:.0f} MiB; up {peaks[0] / 1e6:.0f} MB, down {peaks[1] / 1e6:.0f} MB",
    )


async def rescan(bench: Bench, root: Path, url: str) -> None:
    count = bench.pick(smoke=1000, full=100_000)
    pair = Pair(root, url, "rescan")
    await pair.setup()
    for i in range(count):
        folder = pair.folders[0] / f"d{i // 1000}"
        if i % 1000 == 0:
            folder.mkdir()
        (folder / f"f{i}").write_bytes(b"%d" % i)
    await pair.nodes[0].sync_once()
    await asyncio.sleep(2.5)  # past the racy-mtime window: unchanged files cost a stat only
    await pair.nodes[0].sync_once()
    start = time.perf_counter()
    report = (await pair.nodes[0].sync_once())[pair.share]
    seconds = time.perf_counter() - start
    await pair.close()
    assert report.published == 0
    bench.figure("rescan_unchanged_100k_s", seconds, "s", f"{count} files, a whole pass")


async def restart(bench: Bench, root: Path, url: str) -> None:
    count = bench.pick(smoke=2000, full=100_000)
    pair = Pair(root, url, "restart")
    await pair.setup()
    node = pair.nodes[0]
    replica = node.share(pair.share).replica
    clock = SystemClock()
    batch = 200
    with replica.store.batch():
        for start in range(0, count, batch):
            items = [
                (f"d{i // 1000}/f{i}", FileContent(bytes(64), i, clock.now_ms()))
                for i in range(start, min(start + batch, count))
            ]
            update = replica.tree.import_tree(items, now_ms=clock.now_ms())
            replica.seal(update, (), clock.now_ms())
    device, state = node.device, replica.store.path
    await pair.close()  # a clean shutdown saves the tree
    figures = {}
    for how in ("warm", "replay"):
        if how == "replay":
            snapshot_path(state).unlink()
        store = ShareStore(state)
        start = time.perf_counter()
        opened = ShareReplica.open(store, device, OsRandom())
        figures[how] = time.perf_counter() - start
        assert opened.warm == (how == "warm")
        assert len(opened.tree.index.versions) == count
        store.close()
    bench.figure("restart_100k_warm_s", figures["warm"], "s", f"{count} files, saved tree")
    bench.figure("restart_100k_replay_s", figures["replay"], "s", f"{count} files, every update")


async def run_all(bench: Bench, only: set[str]) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="drift-bench-sync-") as tmp:
        root = Path(tmp)
        with relay_process(root) as url:
            steps = {
                "small": small_files(bench, root, url, rng),
                "big": big_file(bench, root, url, rng),
                "latency": change_latency(bench, root, url),
                "insert": insert_one_byte(bench, root, url, rng),
                "rss": peak_rss(bench, root, url, rng),
                "rescan": rescan(bench, root, url),
                "restart": restart(bench, root, url),
            }
            for name, step in steps.items():
                if only and name not in only:
                    step.close()
                    continue
                await step
                shutil.rmtree(root / name, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="benchmarks.sync")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="small, big, latency, insert, rss, rescan, restart (repeatable)",
    )
    bench, args = Bench.from_argv("sync", argv, parser)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    asyncio.run(run_all(bench, set(args.only)))
    return bench.finish()


if __name__ == "__main__":
    sys.exit(main())
