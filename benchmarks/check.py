"""Compare the latest benchmark results with benchmarks/targets.toml: PASS or MISS per figure.

A MISS is reported, never hidden, and never fails the build (exit status is 0 unless the
targets file itself is broken).
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import RESULTS_DIR

TARGETS = Path(__file__).resolve().parent / "targets.toml"


def evaluate(targets: dict, results_dir: Path) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for bench, figures in sorted(targets.items()):
        result_file = results_dir / f"{bench}.json"
        data = json.loads(result_file.read_text()) if result_file.exists() else None
        for name, spec in sorted(figures.items()):
            target = float(spec["target"])
            better = spec["better"]
            if better not in ("higher", "lower"):
                raise ValueError(f"{bench}.{name}: better must be 'higher' or 'lower'")
            want = f"{'≥' if better == 'higher' else '≤'} {target:g} {spec.get('unit', '')}"
            fig = (data or {}).get("figures", {}).get(name)
            if fig is None:
                rows.append((bench, name, "—", want, "NO DATA"))
                continue
            value = float(fig["value"])
            ok = value >= target if better == "higher" else value <= target
            rows.append((bench, name, f"{value:.3f} {fig['unit']}", want, "PASS" if ok else "MISS"))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.check")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--targets", type=Path, default=TARGETS)
    args = parser.parse_args(argv)
    targets = tomllib.loads(args.targets.read_text())
    rows = evaluate(targets, args.results)
    widths = [max(len(r[i]) for r in rows) for i in range(5)] if rows else [0] * 5
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    verdicts = ("PASS", "MISS", "NO DATA")
    counts = {verdict: sum(r[4] == verdict for r in rows) for verdict in verdicts}
    print(f"{counts['PASS']} PASS, {counts['MISS']} MISS, {counts['NO DATA']} without data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
