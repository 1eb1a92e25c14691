"""Run every benchmark (``make bench``), or the named ones: ``python -m benchmarks.run ingest``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# Each entry is a module in benchmarks/ with main(argv) -> int. Listed, not discovered, so a
# half-written file never runs by accident.
BENCHMARKS: list[str] = ["ingest", "crdt", "relay", "sync", "lan"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    names = [a for a in args if not a.startswith("-")] or BENCHMARKS
    flags = [a for a in args if a.startswith("-")]
    status = 0
    for name in names:
        print(f"== benchmarks.{name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        status |= module.main(flags)
    return status


if __name__ == "__main__":
    sys.exit(main())
