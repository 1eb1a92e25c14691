"""`drift store demo`, folder ingest/restore and snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import demo, tree
from storage.dirstore import DirectoryBlockStore
from storage.errors import ParameterError
from storage.keys import Keyring, SealingKey, ShareKeys
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


async def test_tree_ingest_and_restore_report_per_file_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    share = ShareKeys(b"tree share", bytes(32), bytes(range(32)))
    key = SealingKey(1, bytes(range(1, 33)))
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"first file")
    (source / "sub" / "b.txt").write_bytes(b"second file" * 100)
    real_walk = tree.walk_files
    monkeypatch.setattr(tree, "walk_files", lambda root: [*real_walk(root), root / "vanished"])
    store = DirectoryBlockStore(tmp_path / "store", fsync=False)

    snapshot, stats = await tree.ingest_tree(source, store, share, key)
    assert sorted(snapshot.files) == ["a.txt", "sub/b.txt"]
    assert [(e.path, e.op) for e in stats.errors] == [("vanished", "ingest")]

    block = snapshot.files["a.txt"].block_id
    assert block is not None
    store.path_of(block).unlink()
    written, errors = await tree.restore_tree(
        snapshot, store, share, Keyring([key]), tmp_path / "out"
    )
    assert [(e.path, e.op) for e in errors] == [("a.txt", "restore")]
    assert "not in" in errors[0].reason
    assert (tmp_path / "out" / "sub" / "b.txt").read_bytes() == b"second file" * 100
    assert written == 1100
