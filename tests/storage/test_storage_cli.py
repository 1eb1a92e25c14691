"""`drift store`: keygen, ingest, restore and verify, with their exit codes."""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

import pytest

from storage.cli import ExitCode, main


def make_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha\n" * 1000)
    (root / "sub" / "b.bin").write_bytes(os.urandom(700_000))
    (root / "empty").write_bytes(b"")
    return root


def test_keygen_ingest_restore_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_folder(tmp_path / "source")
    keys, store, snap = tmp_path / "k.json", str(tmp_path / "blocks"), tmp_path / "snap.json"
    assert main(["keygen", str(keys)]) == ExitCode.OK
    assert keys.stat().st_mode & 0o777 == 0o600
    assert main(["keygen", str(keys)]) == ExitCode.FAILED  # never overwrites a key file
    args = ["--keys", str(keys), "--store", store, "--snapshot", str(snap)]
    assert main(["ingest", *args, str(source)]) == ExitCode.OK
    assert main(["restore", *args, str(tmp_path / "out")]) == ExitCode.OK
    for name in ("a.txt", "sub/b.bin", "empty"):
        assert filecmp.cmp(source / name, tmp_path / "out" / name, shallow=False)
    assert main(["verify", "--store", store]) == ExitCode.OK
    victims = [p for p in (tmp_path / "blocks" / "blocks").rglob("*") if p.is_file()]
    victims[0].write_bytes(b"garbage")
    assert main(["verify", "--store", store]) == ExitCode.PARTIAL
    assert "1 damaged" in capsys.readouterr().out


def test_bad_key_file_is_a_clear_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "k.json").write_text("{}")
    code = main(
        ["ingest", "--keys", str(tmp_path / "k.json"), "--store", str(tmp_path / "s"),
         "--snapshot", str(tmp_path / "snap.json"), str(tmp_path)]
    )  # fmt: skip
    assert code == ExitCode.FAILED
    assert "cannot read key file" in capsys.readouterr().err
