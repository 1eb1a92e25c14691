"""``drift simulate``: one seed with its readable trace, or a campaign of many seeds.

    drift simulate --seed 42                 one randomized seed; the trace, then `trace: <hash>`
    drift simulate --seed 42 --shrink        … and, if it fails, a shorter failing schedule
    drift simulate --scripted --seed 1       the scripted three-device scenario
    drift simulate --seeds 1000 --jobs 2 --plot convergence.png

Exit codes: 0 every invariant held; 1 a seed failed (its seed and the replay command are printed);
2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from simulations.campaign import HASH_SEED, SeedResult, run_campaign, tune_gc
from simulations.harness import Outcome, run_world
from simulations.runtime.seed import fresh_seed
from simulations.schedule import LAN_LAYOUTS, TARGET_OPERATIONS, Schedule, generate

REPLAY = "drift simulate --seed {seed}{flags}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="drift simulate",
        description="Deterministic simulations of real devices and a real relay.",
        epilog="Exit codes: 0 all invariants held, 1 a seed failed, 2 bad usage.",
    )
    p.add_argument("--seed", type=int, help="run this one seed (default: a fresh one)")
    p.add_argument("--seeds", type=int, help="run a campaign of this many seeds")
    p.add_argument("--first", type=int, default=0, help="the campaign's first seed (default 0)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--scripted", action="store_true", help="the scripted 3-device scenario")
    p.add_argument("--shrink", action="store_true", help="shrink a failing seed's schedule")
    p.add_argument("--quiet", action="store_true", help="no trace, just the outcome")
    p.add_argument("--plot", type=Path, help="campaign: write convergence vs partition PNG")
    p.add_argument(
        "--no-folder-moves",
        action="store_true",
        help="files still move, folders never do (isolates the folder-move bugs)",
    )
    p.add_argument(
        "--lan-layout",
        choices=sorted(LAN_LAYOUTS),
        help="where the devices sit, for every seed (default: each seed draws one)",
    )
    p.add_argument(
        "--ops", type=int, help=f"operations to schedule per seed (default {TARGET_OPERATIONS})"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if os.environ.get("PYTHONHASHSEED") != HASH_SEED and not args.seeds:
        # Replays must not depend on the interpreter's hash seed: run again with it fixed.
        env = dict(os.environ, PYTHONHASHSEED=HASH_SEED)
        command = [sys.executable, "-m", "simulations", *(argv or sys.argv[1:])]
        os.execve(sys.executable, command, env)
    if args.seeds:
        return campaign(args)
    return one_seed(args, sys.stdout)


def one_seed(args: argparse.Namespace, out: TextIO) -> int:
    seed = args.seed if args.seed is not None else fresh_seed()
    tune_gc()
    out.write(f"SEED={seed}\n")
    sink = None if args.quiet else out
    if args.scripted:
        from simulations.scripted import three_devices

        outcome = run_world(seed, three_devices, sink=sink)
    else:
        from simulations.scenario import run_seed

        outcome = run_seed(seed, schedule=generate(seed, **options(args)), sink=sink)
    print_outcome(outcome, out, flags_of(args))
    if outcome.ok or args.scripted or not args.shrink:
        return 0 if outcome.ok else 1
    from simulations.scenario import run_seed
    from simulations.shrink import shrink

    def attempt(schedule: Schedule) -> Outcome:
        return run_seed(seed, schedule=schedule)

    smaller, result = shrink(
        generate(seed, **options(args)), attempt, report=lambda m: out.write(m + "\n")
    )
    out.write(f"shortest failing schedule: {len(smaller.steps)} steps\n")
    for step in smaller.steps:
        out.write(f"  {step.describe()}\n")
    if result is not None:
        for violation in result.violations:
            out.write(f"  violation: {violation}\n")
    return 1


def options(args: argparse.Namespace) -> dict[str, int | bool | str]:
    """What the command line changes in :func:`simulations.schedule.generate`."""
    out: dict[str, int | bool | str] = {}
    if args.no_folder_moves:
        out["move_folders"] = False
    if args.ops:
        out["target_ops"] = args.ops
    if args.lan_layout:
        out["lan_layout"] = args.lan_layout
    return out


def replay(seed: int, flags: str) -> str:
    return REPLAY.format(seed=seed, flags=flags)


def flags_of(args: argparse.Namespace) -> str:
    flags = " --no-folder-moves" if args.no_folder_moves else ""
    flags += f" --ops {args.ops}" if args.ops else ""
    return flags + (f" --lan-layout {args.lan_layout}" if args.lan_layout else "")


def print_outcome(outcome: Outcome, out: TextIO, flags: str = "") -> None:
    stats = outcome.stats
    out.write(
        f"operations={stats.operations} partitions={stats.partitions} crashes={stats.crashes} "
        f"removals={stats.removals} rotations={stats.rotations} conflicts={stats.conflicts} "
        f"convergence_s={stats.convergence_s}\n"
    )
    for violation in outcome.violations:
        out.write(f"violation: {violation}\n")
    if outcome.error:
        out.write(f"error: {outcome.error}\n")
    if not outcome.ok:
        out.write(f"SEED={outcome.seed}\nreplay: {replay(outcome.seed, flags)}\n")
    out.write(f"{'ok' if outcome.ok else 'FAILED'}\ntrace: {outcome.trace_hash}\n")


def campaign(args: argparse.Namespace) -> int:
    seeds = range(args.first, args.first + args.seeds)

    def progress(result: SeedResult) -> None:
        mark = "." if result.ok else "F"
        sys.stdout.write(mark)
        if not result.ok:
            sys.stdout.write(f"[{result.seed}]")
        sys.stdout.flush()

    summary = run_campaign(seeds, max(1, args.jobs), options=options(args), progress=progress)
    sys.stdout.write("\n")
    for line in summary.lines():
        print(line)
    for result in summary.failed:
        print(f"seed {result.seed}: {'; '.join(f[:160] for f in result.failures[:3])}")
        print(f"  replay: {replay(result.seed, flags_of(args))}")
    if args.plot is not None:
        from simulations.plot import write_scatter

        caption = write_scatter(args.plot, summary.points())
        print(f"plot: {args.plot} ({caption})")
    return 0 if not summary.failed else 1
