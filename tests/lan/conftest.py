"""LAN tests: the namespace bed fixture, and a loud summary when namespace tests could not run."""

from __future__ import annotations

import pytest

from tests.netns.availability import in_ci, skipped_reasons
from tests.netns.fixtures import netns_bed

__all__ = ["netns_bed"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not skipped_reasons:
        return
    reason = skipped_reasons[0]
    terminalreporter.write_sep(
        "!",
        f"NETWORK NAMESPACE TESTS DID NOT RUN ({len(skipped_reasons)} skipped): {reason}",
        red=True,
        bold=True,
    )
    if not in_ci():
        terminalreporter.write_line(
            "They run as root with iproute2 installed; CI (CI=true) requires them.", red=True
        )
