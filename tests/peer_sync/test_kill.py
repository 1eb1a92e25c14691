"""SIGKILL at random points during upload and download: the daemon restarts and finishes, no
partial file is ever visible at its real path, and the relay receives no block more than once
beyond those in flight."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from peer.fs import is_temp_name
from tests.peer_sync.harness import make_device, running_relay, share_between

MiB = 1 << 20
# What can be in flight when the process dies: the upload batches on the wire (see
# peer.engine.content.FLUSH_BYTES and FLUSHES_IN_FLIGHT) and the one being filled.
IN_FLIGHT_BOUND = 3 * 8 * MiB


async def block_bytes_in(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
        text = await resp.text()
    match = re.search(r"^drift_relay_block_bytes_in_total(?:\{[^}]*\})? (\S+)$", text, re.M)
    return int(float(match.group(1))) if match else 0


def assert_complete_or_absent(path: Path, expected: bytes) -> None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    assert hashlib.sha256(data).digest() == hashlib.sha256(expected).digest()


async def run_killed(
    home: Path,
    should_kill: Callable[[int], Awaitable[bool]],
    watch: Path | None,
    expected: bytes,
) -> int:
    """Run `drift run --once`; SIGKILL it whenever ``should_kill(kills so far)`` says so (at
    points in the middle of the work), until one run completes. Returns the number of kills."""
    kills = 0
    while True:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "peer.cli",
            "--home",
            str(home),
            "run",
            "--once",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            while True:
                if watch is not None:
                    assert_complete_or_absent(watch, expected)
                if kills < 3 and await should_kill(kills):
                    break
                try:
                    await asyncio.wait_for(proc.wait(), 0.01)
                    break
                except TimeoutError:
                    continue
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                kills += 1
            else:
                assert proc.stderr is not None
                err = (await proc.stderr.read()).decode()
                assert proc.returncode == 0, err
                return kills


def partial_download(folder: Path) -> int:
    """Bytes in temp files of an unfinished download (never at the real path)."""
    total = 0
    for path in folder.iterdir():
        if is_temp_name(path.name):
            with contextlib.suppress(FileNotFoundError):  # renamed into place meanwhile
                total += path.stat().st_size
    return total


async def test_sigkill_during_upload_and_download(tmp_path: Path, seed: int | None) -> None:
    rng = random.Random(seed if seed is not None else 1)
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        await share_between(a, b)
        await a.node.close()
        await b.node.close()
        data = rng.randbytes(96 * MiB)
        (a.folder / "big.bin").write_bytes(data)
        before = await block_bytes_in(url)
        marks = sorted(rng.uniform(0.1, 0.8) for _ in range(3))

        async def upload_progressed(kills: int) -> bool:
            return await block_bytes_in(url) - before > marks[kills] * len(data)

        kills_up = await run_killed(a.home.root, upload_progressed, None, data)
        received = await block_bytes_in(url) - before
        # Sealed blocks are padded a little above the plaintext size.
        assert received <= len(data) * 1.05 + kills_up * IN_FLIGHT_BOUND

        async def download_progressed(kills: int) -> bool:
            return partial_download(b.folder) > marks[kills] * len(data)

        kills_down = await run_killed(b.home.root, download_progressed, b.folder / "big.bin", data)
        assert (b.folder / "big.bin").read_bytes() == data
        assert not [p for p in b.folder.iterdir() if is_temp_name(p.name)]  # swept on restart
        assert kills_up >= 1
        assert kills_down >= 1
