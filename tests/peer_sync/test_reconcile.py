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


async def test_a_file_put_back_where_its_entry_moved_away_is_a_new_file(tmp_path: Path) -> None:
    """b deletes doc.txt (seen by a pass, not yet published) while a moves it to archive/; then
    b puts the same bytes back at doc.txt. That file is new: it stays at doc.txt, as different
    bytes always did, and the moved entry arrives at archive/doc.txt. It used to take the moved
    entry's id from its index row and was carried off to archive/ (b's doc.txt gone for good)."""
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            (a.folder / "archive").mkdir()
            (a.folder / "doc.txt").write_bytes(b"notes")
            await settle([a, b])
            (b.folder / "doc.txt").unlink()
            await b.node.share(share)._scan_offline()  # the deletion is in b's index
            (a.folder / "doc.txt").rename(a.folder / "archive" / "doc.txt")
            await a.sync()
            (b.folder / "doc.txt").write_bytes(b"notes")
            await settle([b, a])
            want = {"doc.txt": b"notes", "archive/doc.txt": b"notes"}
            assert a.files() == want
            assert b.files() == want
        finally:
            await a.node.close()
            await b.node.close()


async def test_a_folder_made_again_where_its_entry_moved_away_is_a_new_folder(
    tmp_path: Path,
) -> None:
    """Seeds 841, 916: the same with an empty folder. Tied to the moved entry, publishing found
    nothing at its path and recorded nothing: the folder stayed "new here" for good."""
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            (a.folder / "old").mkdir()
            (a.folder / "work").mkdir()
            await settle([a, b])
            (b.folder / "work").rmdir()
            await b.node.share(share)._scan_offline()
            (a.folder / "work").rename(a.folder / "old" / "work")
            await a.sync()
            (b.folder / "work").mkdir()
            await settle([b, a])
            assert a.dirs() == b.dirs() == {"old", "old/work", "work"}
            assert b.node.share(share).store.unsynced() == {}
        finally:
            await a.node.close()
            await b.node.close()


async def test_a_folder_moved_away_and_back_while_its_entry_moved_elsewhere(
    tmp_path: Path,
) -> None:
    """Seed 841's other way to the same place: b moves photos into docs (seen by a pass, not
    yet published) and back, while a moves photos into old. b's index row is back at the tree
    path it was synced at, but the tree holds its entry elsewhere: the folder is published as
    a new one (publishing used to find nothing at the path, and it stayed "new here")."""
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            for folder in ("docs", "old", "photos"):
                (a.folder / folder).mkdir()
            await settle([a, b])
            (b.folder / "photos").rename(b.folder / "docs" / "photos")
            await b.node.share(share)._scan_offline()
            (b.folder / "docs" / "photos").rename(b.folder / "photos")
            (a.folder / "photos").rename(a.folder / "old" / "photos")
            await a.sync()
            await settle([b, a])
            assert a.dirs() == b.dirs() == {"docs", "old", "old/photos", "photos"}
            assert b.node.share(share).store.unsynced() == {}
        finally:
            await a.node.close()
            await b.node.close()


async def test_a_file_put_back_inside_a_folder_moved_here_stays_the_same_entry(
    tmp_path: Path,
) -> None:
    """The entry of a path back on disk is kept where the tree still holds it at the tree path
    the row was synced as, even when the disk path differs (its folder was moved here and the
    move is not published yet): the new bytes are an edit, not a conflicted copy."""
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            (a.folder / "x").mkdir()
            (a.folder / "x" / "f.txt").write_bytes(b"v1")
            await settle([a, b])
            sync = a.node.share(share)
            (a.folder / "x").rename(a.folder / "y")
            await sync._scan_offline()
            (a.folder / "y" / "f.txt").unlink()
            await sync._scan_offline()
            (a.folder / "y" / "f.txt").write_bytes(b"v2")
            await settle([a, b])
            assert a.files() == b.files() == {"y/f.txt": b"v2"}
        finally:
            await a.node.close()
            await b.node.close()


async def test_a_folder_deleted_inside_a_moved_folder_the_share_moved_too_stays_deleted(
    tmp_path: Path,
) -> None:
    """Seed 52: b moves music into work and deletes music/q1 in it, while a moves music into
    old. b's move cannot be followed, so its folder is published as new with what it holds —
    and that used to include q1 from its index row, though it was gone from the disk: the tree
    got work/music/q1 back, b's index held it as synced, and nothing told b's disk until a
    full rescan found it deleted again (120 s later)."""
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            for folder in ("music/q1", "old", "work"):
                (a.folder / folder).mkdir(parents=True)
            (a.folder / "music" / "a.txt").write_bytes(b"song")
            await settle([a, b])
            (a.folder / "music").rename(a.folder / "old" / "music")
            await a.sync()
            (b.folder / "music").rename(b.folder / "work" / "music")
            (b.folder / "work" / "music" / "q1").rmdir()
            await b.sync()
            store = b.node.share(share).store
            assert "work/music/q1" not in store.files()
            assert store.unsynced() == {}
            await settle([a, b])
            # b's delete does not reach the share's q1 (moved away meanwhile): it stays there.
            folders = {"old", "old/music", "old/music/q1", "work", "work/music"}
            assert a.dirs() == b.dirs() == folders
            songs = {"old/music/a.txt": b"song", "work/music/a.txt": b"song"}
            assert a.files() == b.files() == songs
        finally:
            await a.node.close()
            await b.node.close()


async def test_a_file_deleted_inside_a_moved_folder_is_settled_by_the_same_pass(
    tmp_path: Path,
) -> None:
    """Seed 843: b moves music into photos and deletes music's c.bin there, while a edits it.
    b's pass published the move, but the deletion still looked up c.bin at its old tree path
    (music/c.bin, empty once music moved): neither the deletion nor the forgetting of its row
    happened, so b's index kept photos/music/c.bin as deleted with nothing to wake b, and the
    winning edit came down only with the periodic rescan, two minutes later."""
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            (a.folder / "music").mkdir()
            (a.folder / "photos").mkdir()
            (a.folder / "music" / "c.bin").write_bytes(b"first")
            await settle([a, b])
            (a.folder / "music" / "c.bin").write_bytes(b"edited on a")
            await a.sync()
            (b.folder / "music").rename(b.folder / "photos" / "music")
            (b.folder / "photos" / "music" / "c.bin").unlink()
            await b.sync()
            # The edit wins over the delete: it comes back at its new place in this pass.
            assert b.node.share(share).store.unsynced() == {}
            assert b.files() == {"photos/music/c.bin": b"edited on a"}
            await a.sync()
            assert a.files() == b.files()
        finally:
            await a.node.close()
            await b.node.close()


async def test_a_deletion_inside_a_moved_folder_is_published_with_the_move(
    tmp_path: Path,
) -> None:
    """Seed 843, unedited: the deletion of a file in a folder moved in the same pass reaches
    the share with the move, not with a later full rescan."""
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            (a.folder / "music").mkdir()
            (a.folder / "photos").mkdir()
            (a.folder / "music" / "c.bin").write_bytes(b"song")
            await settle([a, b])
            (b.folder / "music").rename(b.folder / "photos" / "music")
            (b.folder / "photos" / "music" / "c.bin").unlink()
            await b.sync()
            assert b.node.share(share).store.unsynced() == {}
            await a.sync()
            assert a.dirs() == b.dirs() == {"photos", "photos/music"}
            assert a.files() == b.files() == {}
        finally:
            await a.node.close()
            await b.node.close()
