"""Can this machine create network namespaces? Asked once, answered with a reason.

Tests that need namespaces call ``require_netns()``: outside CI a missing capability skips them
(and the LAN conftest's terminal summary says so loudly); with ``CI=true`` it fails them, because
CI runs as root and must run them.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

_TOOLS = ("ip", "tc")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@functools.cache
def netns_unavailable_reason() -> str | None:
    """``None`` when namespaces, veth pairs and bridges can be created here; else why not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root (run as root, as CI does)"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (Debian package iproute2)"
    probe = f"dsnet-probe-{os.getpid()}"
    steps = (
        ["ip", "netns", "add", probe],
        ["ip", "-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
        ["ip", "-n", probe, "link", "add", "br0", "type", "bridge"],
    )
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=10, check=False)
            if done.returncode != 0:
                return f"`{' '.join(step)}` failed: {done.stderr.strip() or done.returncode}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run ip: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


skipped_reasons: list[str] = []
"""Why namespace tests did not run in this session (read by the terminal summary hook)."""


def require_netns() -> None:
    """Skip (outside CI) or fail (in CI) the calling test when namespaces are unavailable."""
    reason = netns_unavailable_reason()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI=true but network namespaces cannot be created: {reason}", pytrace=False)
    skipped_reasons.append(reason)
    pytest.skip(f"network namespaces unavailable: {reason}")


def report_skipped(terminalreporter: pytest.TerminalReporter) -> None:
    """A loud line in pytest's summary when namespace tests were skipped; call from a
    ``pytest_terminal_summary`` hook (tests/lan/conftest.py has one)."""
    if not skipped_reasons:
        return
    terminalreporter.write_sep(
        "!",
        f"NETWORK NAMESPACE TESTS DID NOT RUN ({len(skipped_reasons)} skipped): "
        f"{skipped_reasons[0]}",
        red=True,
        bold=True,
    )
    terminalreporter.write_line(
        "They need root and iproute2 (ip, tc); CI (CI=true) fails instead of skipping.", red=True
    )
