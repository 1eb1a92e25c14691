"""LAN benchmark: two daemons in network namespaces, their link shaped with ``tc`` (tbf).

A bed of three namespaces on one bridge (``tests.netns``): the relay (used for setting the share
up, then cut off, so every byte between the devices goes over the LAN) and devices A and B, each
a real daemon process (``tests.lan.agent_daemon daemon``: ``DeviceNode.run`` with LAN peers found
by mDNS). B's cable is shaped both ways to each rate in turn (this kernel has tbf, not netem).

Figures per rate (``1gbit``, ``100mbit``; names as in targets.toml ``[lan.*]``):
- ``tcp_<rate>_mb_s``: raw TCP, one Python socket A → B, measured in the same run;
- ``lan_1gib_<rate>_mb_s``: one file (1 GiB; smoke: 8 MiB, 1 Gbit only) moved into A's folder
  until it is complete on B (A chunks, hashes and seals it, pushes the change; B fetches the
  chunks from A and verifies them), and ``lan_1gib_fraction_of_tcp_<rate>`` = that / raw TCP;
- ``change_p50_ms`` / ``change_p95_ms`` (at 1 Gbit): a small new file on A until it is on B.

Needs root and ``ip``/``tc`` (as the namespace tests); without them it says why and reports a
single ``netns_available`` = 0 figure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.harness import Bench
from tests.netns import Device, TestBed, netns_unavailable_reason

AGENT = "tests.lan.agent_daemon"
TCP = "benchmarks.lan_tcp"
RATES = {"1gbit": 1_000_000, "100mbit": 100_000}  # kbit/s
RELAY_PORT = 8700
TCP_PORT = 9100


def main(argv: Sequence[str] | None = None) -> int:
    bench, _ = Bench.from_argv("lan", argv)
    reason = netns_unavailable_reason()
    if reason is not None:
        print(f"  LAN benchmark NOT RUN: network namespaces unavailable ({reason})")
        bench.figure("netns_available", 0, "bool", note=reason)
        return bench.finish()
    root = Path(tempfile.mkdtemp(prefix="drift-bench-lan-"))
    bed = TestBed.create(3)
    try:
        run(bench, bed, root)
    finally:
        bed.teardown()
        shutil.rmtree(root, ignore_errors=True)
    return bench.finish()


def run(bench: Bench, bed: TestBed, root: Path) -> None:
    relay_ns, a_ns, b_ns = bed.devices
    relay = bed.spawn(
        relay_ns,
        AGENT,
        "relay",
        "--listen",
        relay_ns.address,
        "--port",
        str(RELAY_PORT),
        "--data",
        str(root / "relay"),
    )
    relay.expect(lambda m: m["event"] == "listening", 30, "the relay")
    url = f"http://{relay_ns.address}:{RELAY_PORT}"
    setup = bed.spawn(a_ns, AGENT, "setup", "--relay", url, "--root", str(root), "--devices", "a,b")
    setup.expect(lambda m: m["event"] == "ready", 90, "the share")
    bed.link_down(relay_ns)  # from here on, A and B have only each other
    daemons = {
        name: bed.spawn(
            ns, AGENT, "daemon", "--home", str(root / f"home-{name}"), "--address", ns.address
        )
        for name, ns in (("a", a_ns), ("b", b_ns))
    }
    for name, daemon in daemons.items():
        daemon.expect(lambda m: m["event"] == "running", 30, f"{name}'s daemon")
    folder_a, folder_b = root / "folder-a", root / "folder-b"
    wait_for(lambda: peers(root / "home-b") >= 1, 30, "B linked to A")
    size = bench.pick(smoke=8 << 20, full=1 << 30)
    changes = bench.pick(smoke=3, full=30)
    rates = bench.pick(smoke=dict(list(RATES.items())[:1]), full=RATES)
    for label, kbit in rates.items():
        bed.shape(b_ns, rate_kbit=kbit)
        tcp_bytes = bench.pick(smoke=8 << 20, full=max(64 << 20, kbit * 1000 // 8 * 4))
        tcp = raw_tcp(bed, a_ns, b_ns, tcp_bytes)
        bench.figure(f"tcp_{label}_mb_s", tcp, "MB/s", note=f"{tcp_bytes >> 20} MiB, one socket")
        seconds = file_over_lan(folder_a, folder_b, root, size, label)
        lan = size / seconds / 1e6
        bench.figure(f"lan_1gib_{label}_mb_s", lan, "MB/s", note=f"{size >> 20} MiB file")
        bench.figure(f"lan_1gib_fraction_of_tcp_{label}", lan / tcp, "ratio", note="≥ 0.7 wanted")
        if label == "1gbit":
            latencies = small_changes(folder_a, folder_b, changes)
            bench.figure("change_p50_ms", statistics.median(latencies), "ms", f"{changes} runs")
            bench.figure("change_p95_ms", percentile(latencies, 0.95), "ms", note=f"{changes} runs")
    for daemon in daemons.values():
        daemon.stop()
    relay.stop()


def raw_tcp(bed: TestBed, a_ns: Device, b_ns: Device, total: int) -> float:
    port = str(TCP_PORT)
    sink = bed.spawn(b_ns, TCP, "sink", "--listen", b_ns.address, "--port", port)
    sink.expect(lambda m: m["event"] == "listening", 20, "the TCP sink")
    to = ["--to", b_ns.address, "--port", port, "--bytes", str(total)]
    sender = bed.spawn(a_ns, TCP, "send", *to)
    sender.expect(lambda m: m["event"] == "sent", 600, "the TCP sender")
    got = sink.expect(lambda m: m["event"] == "received", 60, "the TCP sink's count")
    return float(got["bytes"]) / float(got["seconds"]) / 1e6


def file_over_lan(folder_a: Path, folder_b: Path, root: Path, size: int, label: str) -> float:
    """Seconds from a file appearing in A's folder to its complete, verified copy in B's."""
    name = f"big-{label}.bin"
    staging = root / name
    digest = hashlib.sha256()
    with staging.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 16 << 20))
            digest.update(block)
            out.write(block)
            left -= len(block)
    start = time.perf_counter()
    staging.rename(folder_a / name)  # appears whole: the watcher sees one new file
    target = folder_b / name
    wait_for(lambda: target.exists() and target.stat().st_size == size, 1200, f"{name} on B")
    seconds = time.perf_counter() - start
    if sha256_of(target) != digest.hexdigest():
        raise AssertionError(f"{name} arrived on B with other bytes")
    (folder_a / name).unlink()
    return seconds


def small_changes(folder_a: Path, folder_b: Path, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        data = f"small change {i}\n".encode()
        start = time.perf_counter()
        (folder_a / f"change-{i}.txt").write_bytes(data)
        target = folder_b / f"change-{i}.txt"
        wait_for(lambda t=target, d=data: t.exists() and t.read_bytes() == d, 30, "a change")
        latencies.append((time.perf_counter() - start) * 1000)
        time.sleep(0.05)
    return latencies


def peers(home: Path) -> int:
    try:
        return len(json.loads((home / "lan-status.json").read_text())["peers"])
    except (OSError, ValueError, KeyError):
        return 0


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s} s: {what}")
        time.sleep(0.002)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(16 << 20):
            digest.update(block)
    return digest.hexdigest()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


if __name__ == "__main__":
    sys.exit(main())
