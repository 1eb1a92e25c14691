"""SIGKILL at random points during upload and download: the daemon restarts and finishes, no
partial file is ever visible at its real path, and the relay receives no block more than once
beyond those in flight."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

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


async def run_killed(home: Path, rng: random.Random, watch: Path | None, expected: bytes) -> int:
    """Run `drift run --once`, killing it at random moments until one run completes."""
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
        delay = rng.uniform(0.2, 1.2) if kills < 4 else 60.0
        try:
            deadline = asyncio.get_running_loop().time() + delay
            while asyncio.get_running_loop().time() < deadline:
                if watch is not None:
                    # Visible at its real path means complete and verified.
                    assert_complete_or_absent(watch, expected)
                try:
                    await asyncio.wait_for(proc.wait(), 0.02)
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


async def test_sigkill_during_upload_and_download(tmp_path: Path, seed: int | None) -> None:
    rng = random.Random(seed if seed is not None else 1)
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        await share_between(a, b)
        await a.node.close()
        await b.node.close()
        data = rng.randbytes(64 * MiB)
        (a.folder / "big.bin").write_bytes(data)
        before = await block_bytes_in(url)
        kills_up = await run_killed(a.home.root, rng, None, data)
        received = await block_bytes_in(url) - before
        # Sealed blocks are padded a little above the plaintext size.
        assert received <= len(data) * 1.05 + kills_up * IN_FLIGHT_BOUND
        kills_down = await run_killed(b.home.root, rng, b.folder / "big.bin", data)
        assert (b.folder / "big.bin").read_bytes() == data
        assert not [p for p in b.folder.iterdir() if "drift-tmp" in p.name]
        assert kills_up + kills_down >= 1
