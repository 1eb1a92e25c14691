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
    # A group that gets the whole command line (`["share", "create", PATH]`), not just the rest.
    whole_argv: bool = False


PEER_CLI = "peer.cli"

# Ordered as `drift --help` shows them. A group appears only once its module exists.
GROUPS: dict[str, Group] = {
    "init": Group(PEER_CLI, "create your user and this device's identity", True),
    "recover": Group(PEER_CLI, "lost every device? your recovery code brings your user back", True),
    "device": Group(PEER_CLI, "link, add or revoke your devices", True),
    "share": Group(PEER_CLI, "create, invite to, join and manage shared folders", True),
    "run": Group(PEER_CLI, "run the sync daemon in the foreground", True),
    "pause": Group(PEER_CLI, "pause syncing", True),
    "resume": Group(PEER_CLI, "resume syncing", True),
    "status": Group(PEER_CLI, "what is synced, pending, and why not", True),
    "conflicts": Group(PEER_CLI, "list conflicted copies", True),
    "history": Group(PEER_CLI, "list a file's versions", True),
    "restore": Group(PEER_CLI, "restore a file or folder as it was", True),
    "trash": Group(PEER_CLI, "list and recover deleted files", True),
    "relay": Group("relay.cli", "run and administer a cloud relay (`drift relay login` signs in)"),
    "store": Group("storage.cli", "ingest a folder into an encrypted block store, restore it"),
    "simulate": Group("simulations.cli", "deterministic multi-device simulations"),
    "demo": Group("peer.demo", "two people, three devices and a relay syncing on loopback"),
}

# The peer's options that may stand before its command word (`drift --home D share create P`),
# with how many values each takes.
PEER_GLOBAL_OPTIONS: dict[str, int] = {"--home": 1, "--json": 0, "--debug": 0}

# Subcommands that belong to another package than their group: signing in to a relay is the
# device's business, running one is the relay's.
OVERRIDES: dict[tuple[str, str], Group] = {
    ("relay", "login"): Group(PEER_CLI, "sign this device in to a relay", True),
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
    lead = 0
    while lead < len(args) and args[lead].split("=", 1)[0] in PEER_GLOBAL_OPTIONS:
        option = args[lead].split("=", 1)[0]
        lead += 1 if "=" in args[lead] else 1 + PEER_GLOBAL_OPTIONS[option]
    if lead >= len(args):
        print(usage(), end="", file=sys.stderr)
        return 2
    name, rest = args[lead], args[lead + 1 :]
    group = OVERRIDES.get((name, rest[0] if rest else "")) or available_groups().get(name)
    if group is None or importlib.util.find_spec(group.module) is None:
        words = " ".join(args[:2]) if (name, rest[0] if rest else "") in OVERRIDES else name
        print(f"drift: unknown command {words!r}\n", file=sys.stderr)
        print(usage(), end="", file=sys.stderr)
        return 2
    module = importlib.import_module(group.module)
    if lead and not group.whole_argv:
        print(f"drift: {' '.join(args[:lead])} is an option of the device commands, "
              f"not of `drift {name}`", file=sys.stderr)
        return 2
    return int(module.main(args if group.whole_argv else rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
