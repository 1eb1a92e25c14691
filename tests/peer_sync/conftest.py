"""Fixtures for the peer's end-to-end sync tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int | None:
    """The ``--seed`` given on the command line, to replay one run of a seeded test."""
    value = request.config.getoption("--seed")
    return None if value is None else int(value)
