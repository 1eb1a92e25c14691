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


async def test_folder_moved_into_the_old_place_of_a_folder_moved_away(tmp_path: Path) -> None:
    """Seed 206: a moves music to photos/music, then another folder to music/docs (a new
    music folder), and publishes both moves in one pass. The move into music/docs used to go first
    and land in the tree's old music folder, which the second move then carried to
    photos/music: the tree had photos/music/docs while the disk kept music/docs, for good."""
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            (a.folder / "music").mkdir()
            (a.folder / "music" / "a.txt").write_bytes(b"song")
            (a.folder / "work" / "docs").mkdir(parents=True)
            (a.folder / "work" / "docs" / "Notes.md").write_bytes(b"notes")
            (a.folder / "photos").mkdir()
            await settle([a, b])
            (a.folder / "music").rename(a.folder / "photos" / "music")
            # Looked at before the next move (as a pass without the relay does): music moved.
            await a.node.share(share)._scan_offline()
            (a.folder / "music").mkdir()
            (a.folder / "work" / "docs").rename(a.folder / "music" / "docs")
            await settle([a, b])
            want = {"photos/music/a.txt": b"song", "music/docs/Notes.md": b"notes"}
            assert a.files() == b.files() == want
        finally:
            await a.node.close()
            await b.node.close()
