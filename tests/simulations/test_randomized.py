"""Randomized schedules on the real peer and relay: a fixed set of small seeds (fast), the
determinism of a seed across processes, the campaign summary and its plot, shrinking."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from simulations.campaign import SeedResult, Summary, run_campaign
from simulations.glyphs import GLYPH_HEIGHT, GLYPH_WIDTH, GLYPHS, pixels
from simulations.harness import Outcome, Stats
from simulations.invariants import Violation
from simulations.plot import TITLE, X_LABEL, Y_LABEL, scatter
from simulations.scenario import run_seed
from simulations.schedule import DEVICES, LAN_LAYOUTS, Schedule, Step, generate
from simulations.shrink import shrink

SMALL = {"target_ops": 60, "devices": 3, "move_folders": True}
FIXED_SEEDS = tuple(range(8))
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("seed", FIXED_SEEDS)
def test_fixed_seed_keeps_every_invariant(seed: int) -> None:
    outcome = run_seed(seed, schedule=generate(seed, **SMALL))  # type: ignore[arg-type]
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], f"replay: drift simulate --seed {seed}"
    assert outcome.stats.convergence_s is not None


def test_schedule_is_a_function_of_the_seed() -> None:
    assert generate(11).steps == generate(11).steps
    assert generate(11).steps != generate(12).steps
    assert generate(11).operations >= 200


def test_seeds_draw_every_lan_layout_and_a_layout_can_be_fixed() -> None:
    drawn = {generate(seed).lan_layout for seed in range(40)}
    assert drawn == set(LAN_LAYOUTS)
    fixed = generate(11, lan_layout="wan_only")
    assert fixed.steps == generate(11).steps  # the layout has its own draws
    assert [fixed.lan_of(name) for name, _ in DEVICES] == [None] * len(DEVICES)
    with pytest.raises(ValueError, match="unknown LAN layout"):
        generate(11, lan_layout="moon_base")


def test_a_seed_replays_byte_for_byte_in_another_process() -> None:
    env = dict(os.environ, PYTHONHASHSEED="7")  # the CLI fixes it itself
    command = [sys.executable, "-m", "simulations", "--scripted", "--seed", "2"]
    runs = [
        subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr[-2000:]
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout.rstrip().splitlines()[-1].startswith("trace: ")


def test_campaign_summary_counts_what_happened() -> None:
    summary = run_campaign([0, 2], 2, options={"target_ops": 20, "devices": 3})
    assert [r.seed for r in summary.results] == [0, 2]
    text = "\n".join(summary.lines())
    for counter in ("seeds: 2", "operations:", "partitions:", "crashes:", "conflicted copies"):
        assert counter in text
    assert summary.total("operations") > 0


def test_the_summary_names_the_seeds_slowest_to_converge() -> None:
    times = {4: 3.0, 5: 130.0, 6: None, 7: 9.5, 8: 125.0}
    summary = Summary(
        [
            SeedResult(s, True, (), {"operations": 200, "convergence_s": t}, "", 0.0)
            for s, t in times.items()
        ]
    )
    assert "slowest to converge: seed 5 130.0 s, seed 8 125.0 s, seed 7 9.5 s" in summary.lines()


def test_scatter_is_a_valid_png() -> None:
    data, caption = scatter([(10.0, 2.0), (100.0, 8.5)])
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    length = struct.unpack(">I", data[33:37])[0]
    raw = zlib.decompress(data[41 : 41 + length])
    assert len(raw) == height * (1 + 3 * width)
    assert "100 virtual s" in caption
    rows = [raw[y * (1 + 3 * width) + 1 : (y + 1) * (1 + 3 * width)] for y in range(height)]
    black_in = [
        any(row[i : i + 3] == b"\x00\x00\x00" for i in range(0, len(row), 3)) for row in rows
    ]
    assert any(black_in[:30]), "the title is drawn above the plot"
    assert any(black_in[-30:]), "the x axis label is drawn below it"


def test_the_plot_font_draws_its_labels_and_refuses_other_characters() -> None:
    for label in (TITLE, X_LABEL, Y_LABEL, "0123456789.5"):
        assert all(pixels(c) or c == " " for c in label)
    assert all(
        len(rows) == GLYPH_HEIGHT and {len(r) for r in rows} == {GLYPH_WIDTH}
        for rows in GLYPHS.values()
    )
    with pytest.raises(ValueError, match="no glyph"):
        pixels("Q")


def test_shrinking_keeps_only_what_still_fails() -> None:
    steps = [Step("wait", seconds=1.0)] * 7 + [Step("crash", ("pc",))] + [Step("burst")] * 8
    runs: list[int] = []

    def run(schedule: Schedule) -> Outcome:
        runs.append(1)
        fails = any(s.kind == "crash" for s in schedule.steps)
        violations = [Violation("same_tree", "diverged")] if fails else []
        return Outcome(schedule.seed, violations, Stats(), "")

    smaller, outcome = shrink(Schedule(1, steps), run)
    assert [s.kind for s in smaller.steps] == ["crash"]
    assert outcome is not None
    assert len(runs) <= 40
