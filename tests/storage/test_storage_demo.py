"""`drift demo` and folder snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import demo
from storage.errors import ParameterError
from storage.tree import TreeSnapshot


def test_demo_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--out", str(tmp_path), "--files", "40", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "byte-identical" in out
    assert "2 new blocks stored" in out
    assert (tmp_path / "snapshot.json").exists()
    assert (tmp_path / "restored" / "projects" / "dataset.bin").stat().st_size > 0


@pytest.mark.parametrize("bad", ['{"../x": {}}', '{"/etc/passwd": {}}', "[1]", "not json"])
def test_snapshots_refuse_paths_outside_the_folder(bad: str) -> None:
    with pytest.raises(ParameterError):
        TreeSnapshot.from_json(bad)
