"""`drift`: a thin dispatcher over each package's command group.

Command groups are loaded lazily, so `drift relay serve` never imports the peer, and `drift --help`
imports nothing but this file. A group is a module with ``main(argv: list[str]) -> int`` that
builds its own argparse parser (prog ``drift <group>``): argparse is the one CLI framework here.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from typing import NamedTuple


class Group(NamedTuple):
    module: str
    summary: str


# Ordered as `drift --help` shows them. A group appears only once its module exists.
GROUPS: dict[str, Group] = {
    "demo": Group("storage.demo", "run the demo: what driftsync can do today, on loopback"),
    "store": Group("storage.cli", "ingest a folder into an encrypted block store, restore it"),
    "relay": Group("relay.cli", "run and administer a cloud relay"),
    "simulate": Group("simulations.cli", "deterministic multi-device simulations"),
}

USAGE = """\
usage: drift <command> [options]

driftsync keeps folders identical across your devices and the people you share them with:
LAN peers swap data directly, a relay stores end-to-end encrypted blocks, and the folder tree
is a CRDT so devices edit offline and converge.

commands:
{commands}

Run `drift <command> --help` for a command's options and examples.
"""


def available_groups() -> dict[str, Group]:
    found = {}
    for name, group in GROUPS.items():
        try:
            if importlib.util.find_spec(group.module) is not None:
                found[name] = group
        except ModuleNotFoundError:
            continue
    return found


def usage() -> str:
    groups = available_groups()
    width = max((len(n) for n in groups), default=8)
    lines = "\n".join(f"  {name:<{width}}  {g.summary}" for name, g in groups.items())
    return USAGE.format(commands=lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return 0
    if args[0] == "--version":
        from importlib.metadata import version

        print(f"drift {version('driftsync')}")
        return 0
    name, rest = args[0], args[1:]
    group = available_groups().get(name)
    if group is None:
        print(f"drift: unknown command {name!r}\n", file=sys.stderr)
        print(usage(), end="", file=sys.stderr)
        return 2
    module = importlib.import_module(group.module)
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
