"""Seeds: pick one, name it on failure, and say how to replay it.

A run's only input is its seed. A run without ``--seed`` draws a fresh one (the one place that
reads the OS's randomness) and prints it first, so any failure can be replayed exactly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

DEFAULT_REPLAY = "python -m simulations --seed {seed}"


def fresh_seed() -> int:
    return int.from_bytes(os.urandom(8), "big") >> 1


def add_seed_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seed", type=int, default=None, help="replay this seed exactly (default: a fresh one)"
    )


def parse_seed(argv: Sequence[str]) -> int:
    """``--seed N`` from ``argv``, or a fresh seed; unknown arguments are left for others."""
    parser = argparse.ArgumentParser(add_help=False)
    add_seed_argument(parser)
    known, _ = parser.parse_known_args(list(argv))
    return known.seed if known.seed is not None else fresh_seed()


def seeds_to_run(replay_seed: int | None, count: int, first: int = 0) -> list[int]:
    """The seeds a test or campaign runs: just ``replay_seed`` when one was given (``--seed``),
    else ``count`` consecutive seeds from ``first``."""
    if replay_seed is not None:
        return [replay_seed]
    return list(range(first, first + count))


def replay_hint(seed: int, replay: str = DEFAULT_REPLAY) -> str:
    return f"SEED={seed}\nreplay: {replay.format(seed=seed)}"


def run_seeds(
    scenario: Callable[[int], T],
    seeds: Iterable[int],
    *,
    replay: str = DEFAULT_REPLAY,
    out: Callable[[str], object] = lambda line: print(line, file=sys.stderr),
) -> list[T]:
    """Run ``scenario(seed)`` for each seed; the first failure is printed with ``SEED=N`` and the
    command that replays it, then raised with the same hint attached as a note."""
    results = []
    for seed in seeds:
        try:
            results.append(scenario(seed))
        except Exception as exc:
            hint = replay_hint(seed, replay)
            out(f"simulation failed: {type(exc).__name__}: {exc}\n{hint}")
            if f"SEED={seed}" not in getattr(exc, "__notes__", []):
                exc.add_note(f"SEED={seed}")
            exc.add_note(f"replay: {replay.format(seed=seed)}")
            raise
    return results
