"""A pass reconciles whatever it finds: cases the simulations found where the disk stopped
following the tree (each names the seed that found it)."""

from __future__ import annotations

from pathlib import Path

from tests.peer_sync.harness import make_device, running_relay, settle, share_between


async def test_file_deleted_inside_a_moved_folder_comes_back_when_edited_elsewhere(
    tmp_path: Path,
) -> None:
    """Seed 232: b moves a folder and deletes a file in it while a edits that file. The edit
    wins over the delete, so the file must come back on b at its new place — it used to stay
    missing for good: the move re-keyed the file's base row to a path with nothing on disk, and
    the next pass forgot the row without ever downloading the winning edit."""
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            await share_between(a, b)
            (a.folder / "q").mkdir()
            (a.folder / "q" / "c.txt").write_bytes(b"first")
            await settle([a, b])
            assert b.files() == {"q/c.txt": b"first"}
            (a.folder / "q" / "c.txt").write_bytes(b"edited on a")
            await a.sync()
            (b.folder / "q").rename(b.folder / "r")  # b has not pulled a's edit yet
            (b.folder / "r" / "c.txt").unlink()
            await settle([b, a])
            assert a.files() == b.files() == {"r/c.txt": b"edited on a"}
        finally:
            await a.node.close()
            await b.node.close()
