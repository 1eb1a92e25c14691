"""LAN tests: the namespace bed fixture, and a loud summary when namespace tests could not run."""

from __future__ import annotations

import pytest

from tests.netns.availability import report_skipped
from tests.netns.fixtures import netns_bed

__all__ = ["netns_bed"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report_skipped(terminalreporter)
