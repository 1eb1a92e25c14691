"""`make demo` runs to the end: relay process, three devices, conflict, move, delete + restore."""

from __future__ import annotations

from pathlib import Path

import pytest

from peer.demo import main


@pytest.mark.timeout(180)
def test_demo_runs_and_converges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "all three folders identical: True" in out
    assert "done. folders:" in out
