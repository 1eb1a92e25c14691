"""The ground every package stands on: the dispatcher and the layering contract."""

from __future__ import annotations

import subprocess
import sys

from driftsync.cli import GROUPS, available_groups, main


def test_help_lists_only_groups_that_exist(capsys) -> None:
    assert main(["--help"]) == 0
    listed = {
        line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")
    }
    assert listed == set(available_groups())


def test_unknown_command_is_a_usage_error(capsys) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_overrides_route_to_existing_groups_or_say_which_words_are_unknown(capsys) -> None:
    from driftsync.cli import OVERRIDES

    for (group, sub), target in OVERRIDES.items():
        assert group in GROUPS
        if target.module not in {g.module for g in available_groups().values()}:
            assert main([group, sub]) == 2
            assert f"unknown command '{group} {sub}'" in capsys.readouterr().err


HELP_PROBE = """
import sys
from driftsync.cli import main
main(["--help"])
heavy = sorted(
    m for m in sys.modules
    if (m.endswith((".cli", ".demo")) and m != "driftsync.cli")
    or m.split(".")[0] in ("aiohttp", "pycrdt", "boto3", "nacl")
)
print("HEAVY", heavy)
"""


def test_help_imports_no_command_group() -> None:
    out = subprocess.run(
        [sys.executable, "-c", HELP_PROBE], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_device_options_before_the_command_reach_the_device_commands(tmp_path, capsys) -> None:
    # An empty home has no identity: the device commands say what to do next.
    assert main(["--home", str(tmp_path), "--json", "status"]) != 2
    assert "drift init" in capsys.readouterr().err
    assert main(["--home", str(tmp_path), "store"]) == 2
    assert "not of `drift store`" in capsys.readouterr().err
    assert main(["--home"]) == 2


def test_every_device_command_is_reachable_through_drift() -> None:
    from driftsync.cli import GROUPS, PEER_CLI
    from peer.cli import COMMANDS

    routed = {word for word, group in GROUPS.items() if group.module == PEER_CLI}
    assert set(COMMANDS) <= routed, sorted(set(COMMANDS) - routed)
