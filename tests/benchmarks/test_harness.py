"""The benchmark harness and the PASS/MISS check; every listed benchmark runs at smoke size."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from benchmarks import check
from benchmarks.harness import Bench, peak_rss_of
from benchmarks.run import BENCHMARKS

ROOT = Path(__file__).resolve().parents[2]


def test_bench_writes_figures_with_the_machine(tmp_path: Path, capsys) -> None:
    bench, _ = Bench.from_argv("unit", ["--smoke", "--out", str(tmp_path)])
    bench.figure("speed_mb_s", 123.5, "MB/s")
    assert bench.finish() == 0
    data = json.loads((tmp_path / "unit.smoke.json").read_text())
    assert data["smoke"] is True
    assert data["figures"]["speed_mb_s"]["value"] == 123.5
    assert data["machine"]["cores"] >= 1
    assert "speed_mb_s" in capsys.readouterr().out


def test_check_says_pass_miss_and_no_data(tmp_path: Path) -> None:
    targets = tomllib.loads(
        """
        [b.fast]
        target = 100
        better = "higher"
        [b.small]
        target = 10
        better = "lower"
        [b.absent]
        target = 1
        better = "lower"
        """
    )
    (tmp_path / "b.json").write_text(
        json.dumps(
            {
                "figures": {
                    "fast": {"value": 150, "unit": "MB/s"},
                    "small": {"value": 11, "unit": "MB"},
                }
            }
        )
    )
    verdicts = {row[1]: row[4] for row in check.evaluate(targets, tmp_path)}
    assert verdicts == {"fast": "PASS", "small": "MISS", "absent": "NO DATA"}


def test_targets_file_is_well_formed() -> None:
    targets = tomllib.loads((ROOT / "benchmarks" / "targets.toml").read_text())
    assert check.evaluate(targets, ROOT / "no-such-dir")  # every row parses
    for figures in targets.values():
        for spec in figures.values():
            assert spec["better"] in ("higher", "lower")


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_smoke_run(name: str, tmp_path: Path) -> None:
    """A tiny run of each benchmark so none rots; timing never fails here."""
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads((tmp_path / f"{name}.smoke.json").read_text())
    assert data["figures"], "a benchmark must report at least one figure"


def test_peak_rss_of_a_child_is_its_own_not_the_parents() -> None:
    ballast = bytearray(300 << 20)  # the parent is big; a small child must not inherit its peak
    ballast[::4096] = b"x" * len(ballast[::4096])
    code, small = peak_rss_of([sys.executable, "-c", "pass"])
    assert code == 0
    assert small < 100 << 20
    code, big = peak_rss_of(
        [sys.executable, "-c", "import time; b = bytearray(200 << 20); b[::4096] = b'x' * "
         "len(b[::4096]); time.sleep(0.1)"]
    )
    assert code == 0
    assert big > 200 << 20
    del ballast
