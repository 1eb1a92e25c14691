"""The ``netns_bed`` fixture: build beds of N devices, tear every one down after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.netns.availability import require_netns
from tests.netns.bed import TestBed, remove_stale

_stale_checked = False


@pytest.fixture
def netns_bed() -> Iterator[Callable[[int], TestBed]]:
    """``bed = netns_bed(3)``; skips (fails with ``CI=true``) where namespaces cannot be made."""
    global _stale_checked
    require_netns()
    if not _stale_checked:
        remove_stale()
        _stale_checked = True
    beds: list[TestBed] = []

    def make(count: int) -> TestBed:
        bed = TestBed.create(count)
        beds.append(bed)
        return bed

    try:
        yield make
    finally:
        for bed in beds:
            bed.teardown()
