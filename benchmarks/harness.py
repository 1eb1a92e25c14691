"""The harness every benchmark uses: machine facts, a printed table, JSON results.

A benchmark module defines ``main(argv: list[str] | None = None) -> int`` and reports through
:class:`Bench`::

    bench = Bench.from_argv("ingest", argv)      # parses --smoke and --out
    size = bench.pick(smoke=4 << 20, full=1 << 30)
    ...
    bench.figure("ingest_page_cache_mb_s", mb / seconds, "MB/s", note="2 threads")
    return bench.finish()                        # prints the table, writes <out>/<name>.json

``--smoke`` runs a tiny version so ``make test`` keeps every benchmark from rotting; its figures
are written to ``<name>.smoke.json`` and never compared with targets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

RESULTS_DIR = Path(__file__).resolve().parent / "results"
T = TypeVar("T")


def machine() -> dict[str, object]:
    """What the figures were measured on: they mean nothing without it."""
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_bytes = 0
    with suppress(ValueError, OSError):
        mem_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(mem_bytes / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    note: str = ""


@dataclass
class Bench:
    name: str
    smoke: bool
    out_dir: Path
    figures: list[Figure] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)

    @classmethod
    def from_argv(
        cls, name: str, argv: Sequence[str] | None, parser: argparse.ArgumentParser | None = None
    ) -> tuple[Bench, argparse.Namespace]:
        parser = parser or argparse.ArgumentParser(prog=f"benchmarks.{name}")
        parser.add_argument("--smoke", action="store_true", help="tiny sizes, for make test")
        parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where JSON goes")
        args = parser.parse_args(argv)
        return cls(name=name, smoke=args.smoke, out_dir=args.out), args

    def pick(self, *, smoke: T, full: T) -> T:
        return smoke if self.smoke else full

    def figure(self, name: str, value: float, unit: str, note: str = "") -> None:
        self.figures.append(Figure(name, float(value), unit, note))
        print(f"  {name:<40} {value:>14.3f} {unit:<8} {note}", flush=True)

    @contextmanager
    def timer(self) -> Iterator[list[float]]:
        """``with bench.timer() as t: ...``; afterwards ``t[0]`` holds the seconds."""
        box: list[float] = []
        start = time.perf_counter()
        try:
            yield box
        finally:
            box.append(time.perf_counter() - start)

    def finish(self) -> int:
        info = machine()
        print()
        print(f"benchmark {self.name}{' (smoke)' if self.smoke else ''}")
        print(f"machine: {info['cores']} cores, {info['cpu_model']}, {info['memory_gib']} GiB, "
              f"Python {info['python']}")
        width = max((len(f.name) for f in self.figures), default=10)
        for f in self.figures:
            print(f"  {f.name:<{width}}  {f.value:>14.3f}  {f.unit:<8} {f.note}")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        suffix = ".smoke.json" if self.smoke else ".json"
        path = self.out_dir / f"{self.name}{suffix}"
        payload = {
            "benchmark": self.name,
            "smoke": self.smoke,
            "machine": info,
            "started_at": self.started_at,
            "duration_s": time.time() - self.started_at,
            "figures": {f.name: asdict(f) for f in self.figures},
        }
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {path}")
        return 0


def _vm_hwm_bytes(pid: int | str) -> int | None:
    """A process's peak resident set since its exec (``VmHWM``), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss_of(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[int, int]:
    """Run ``cmd`` as a child process; return (exit code, its peak resident set in bytes).

    Peak RSS of a phase is only honest in a process of its own: the parent's high-water mark
    never goes down. Not wait4's ``ru_maxrss``: Linux carries the parent's high-water mark into
    a child across fork and exec, so it would report the parent's peak. ``VmHWM`` belongs to the
    child's own address space; it only grows, so polling it until the child exits misses at most
    the growth of its last few milliseconds.
    """
    proc = subprocess.Popen(list(cmd), env=env)
    peak = 0
    while True:
        hwm = _vm_hwm_bytes(proc.pid)
        if hwm is not None:
            peak = max(peak, hwm)
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, peak
        time.sleep(0.005)


def own_peak_rss_bytes() -> int:
    """This process's peak resident set since exec."""
    hwm = _vm_hwm_bytes("self")
    if hwm is not None:
        return hwm
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, *args]
