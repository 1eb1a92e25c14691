"""The scanner: what changed since the index, at the cost of a stat for unchanged files."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from peer.fs import AccessDeniedError, FileKind, MemFileSystem, OsFileSystem, SimulatedCrash
from peer.local.index import LocalIndex, SyncState
from peer.local.scan import ChangeKind, Scanner, ScanResult, minimal_roots, record_scan
from peer.local.watch import Watcher
from seams import InlineExecutor, SystemClock, ThreadExecutor
from tests.peer.helpers import ErrorFs, FakeClock


async def make(fs: Any, clock: FakeClock, **kw: Any) -> Scanner:
    index = await LocalIndex.open(":memory:", InlineExecutor())
    return Scanner(fs, index, executor=InlineExecutor(), clock=clock, stable_interval_s=0.1, **kw)


async def scan_and_record(scanner: Scanner, *under: str) -> ScanResult:
    result = await scanner.scan(under or ("",))
    await record_scan(scanner.index, result)
    return result


def kinds(result: ScanResult) -> list[tuple[str, str]]:
    return [
        (c.kind.value, c.path if c.src is None else f"{c.src}->{c.path}") for c in result.changes
    ]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memfs(clock: FakeClock) -> MemFileSystem:
    return MemFileSystem(seed=5, clock=clock)


async def test_first_scan_adds_everything_and_a_rescan_reads_nothing(
    memfs: MemFileSystem, clock: FakeClock
) -> None:
    memfs.mkdir("docs")
    memfs.write_atomic("docs/a.txt", b"alpha")
    memfs.write_atomic("run.sh", b"#!", executable=True)
    memfs.symlink("link", "docs")
    memfs.write_atomic(".DS_Store", b"junk")
    clock.advance(5)  # else the entries are racy and the next scan re-hashes them, rightly
    counting = ErrorFs(memfs)
    scanner = await make(counting, clock)
    first = await scan_and_record(scanner)
    assert kinds(first) == [
        ("added", "docs"),
        ("added", "docs/a.txt"),
        ("added", "link"),
        ("added", "run.sh"),
    ]
    link = next(c.new for c in first.changes if c.path == "link")
    assert link is not None
    assert link.kind is FileKind.SYMLINK
    entry = await scanner.index.get("run.sh")
    assert entry is not None
    assert entry.executable
    assert entry.state is SyncState.NEW
    clock.advance(5)
    counting.calls.clear()
    again = await scanner.scan()
    assert again.changes == []
    assert again.files_hashed == 0
    assert again.files_seen == 3
    assert counting.calls.get("open_read", 0) == 0
    assert counting.calls.get("read_link", 0) == 0


async def test_edits_deletes_and_type_changes(memfs: MemFileSystem, clock: FakeClock) -> None:
    memfs.write_atomic("a", b"1")
    memfs.write_atomic("b", b"2")
    memfs.write_atomic("c", b"3")
    memfs.write_atomic("mode", b"x")
    scanner = await make(memfs, clock)
    await scan_and_record(scanner)
    clock.advance(5)
    memfs.write_atomic("a", b"changed")
    memfs.remove_file("b")
    memfs.remove_file("c")
    memfs.mkdir("c")
    memfs.set_meta("mode", executable=True)
    result = await scan_and_record(scanner)
    assert kinds(result) == [
        ("modified", "a"),
        ("deleted", "b"),
        ("type_changed", "c"),
        ("modified", "mode"),
    ]
    b = await scanner.index.get("b")
    assert b is not None
    assert b.state is SyncState.DELETED
    clock.advance(5)
    assert (await scanner.scan()).changes == []


async def test_a_touch_without_change_refreshes_silently(
    memfs: MemFileSystem, clock: FakeClock
) -> None:
    memfs.write_atomic("a", b"same")
    scanner = await make(memfs, clock)
    await scan_and_record(scanner)
    await scanner.index.mark_synced("a", node_id="n", version=b"v", chunks=())
    clock.advance(10)
    memfs.write_atomic("a", b"same")  # a new inode and mtime, the same bytes
    result = await scan_and_record(scanner)
    assert result.changes == []
    assert [e.path for e in result.refreshed] == ["a"]
    entry = await scanner.index.get("a")
    assert entry is not None
    assert (entry.state, entry.node_id) == (SyncState.SYNCED, "n")


async def test_moves_renames_and_case_only_renames_are_moves(clock: FakeClock) -> None:
    fs = MemFileSystem(seed=1, clock=clock, case_insensitive=True)
    fs.mkdir("dir/sub", parents=True)
    fs.write_atomic("dir/sub/keep", b"keep")
    fs.write_atomic("dir/edit", b"before")
    fs.write_atomic("dir/gone", b"gone")
    fs.write_atomic("readme", b"read me")
    fs.write_atomic("f1", b"content one")
    scanner = await make(fs, clock)
    await scan_and_record(scanner)
    await scanner.index.mark_synced("dir/sub/keep", node_id="keep-node", version=None, chunks=())
    clock.advance(5)
    fs.rename("dir", "moved")
    fs.write_atomic("moved/edit", b"after!")
    fs.remove_file("moved/gone")
    fs.rename("readme", "README")
    fs.mkdir("other")
    fs.rename("f1", "other/f1-renamed")
    result = await scan_and_record(scanner)
    assert kinds(result) == [
        ("moved", "dir->moved"),
        ("moved", "readme->README"),
        ("moved", "f1->other/f1-renamed"),
        ("modified", "moved/edit"),
        ("deleted", "moved/gone"),
        ("added", "other"),
    ]
    keep = await scanner.index.get("moved/sub/keep")
    assert keep is not None
    assert keep.node_id == "keep-node"
    assert sorted(await scanner.index.entries("dir")) == []
    clock.advance(5)
    assert (await scanner.scan()).changes == []


async def test_duplicate_content_moves_pair_by_inode(
    memfs: MemFileSystem, clock: FakeClock
) -> None:
    memfs.write_atomic("x", b"dup")
    memfs.write_atomic("y", b"dup")
    memfs.write_atomic("empty", b"")
    scanner = await make(memfs, clock)
    await scan_and_record(scanner)
    clock.advance(5)
    memfs.rename("y", "y2")
    memfs.remove_file("empty")
    memfs.write_atomic("empty2", b"")
    result = await scanner.scan()
    assert kinds(result) == [("moved", "y->y2"), ("deleted", "empty"), ("added", "empty2")]


async def test_a_file_still_being_written_is_not_reported(
    memfs: MemFileSystem, clock: FakeClock
) -> None:
    memfs.write_atomic("download.iso", b"part")
    scanner = await make(memfs, clock)
    clock.on_sleep = lambda: memfs.write_atomic("download.iso", b"part, more")
    result = await scan_and_record(scanner)
    assert result.changes == []
    assert result.unstable == ["download.iso"]
    assert clock.slept_s == pytest.approx(0.1)
    result = await scan_and_record(scanner)
    assert kinds(result) == [("added", "download.iso")]


async def test_unreadable_directory_hides_nothing_as_deleted(
    memfs: MemFileSystem, clock: FakeClock
) -> None:
    memfs.mkdir("private")
    memfs.write_atomic("private/a", b"a")
    memfs.write_atomic("b", b"b")
    failing = ErrorFs(memfs)
    scanner = await make(failing, clock)
    await scan_and_record(scanner)
    clock.advance(5)
    failing.fail[("list_dir", "private")] = AccessDeniedError("list", "private", "denied")
    failing.fail[("open_read", "b")] = AccessDeniedError("open", "b", "denied")
    memfs.write_atomic("b", b"bb")
    result = await scan_and_record(scanner)
    assert result.changes == []
    assert [(e.path, e.op) for e in result.errors] == [("private", "scan"), ("b", "read")]
    assert [e.path for e in await scanner.index.errors()] == ["b", "private"]
    del failing.fail[("open_read", "b")]
    fixed = await scan_and_record(scanner)
    assert kinds(fixed) == [("modified", "b")]
    assert [e.path for e in await scanner.index.errors()] == ["private"]


async def test_newly_ignored_paths_are_not_deleted(memfs: MemFileSystem, clock: FakeClock) -> None:
    memfs.mkdir("build")
    memfs.write_atomic("build/out.o", b"o")
    memfs.write_atomic("notes.tmp", b"t")
    scanner = await make(memfs, clock)
    await scan_and_record(scanner)
    clock.advance(5)
    memfs.write_atomic(".driftignore", b"build/\n*.tmp\n")
    result = await scan_and_record(scanner)
    assert kinds(result) == [("added", ".driftignore")]
    assert sorted(result.now_ignored) == ["build", "build/out.o", "notes.tmp"]
    entry = await scanner.index.get("notes.tmp")
    assert entry is not None
    assert entry.state is SyncState.IGNORED
    clock.advance(5)
    memfs.write_atomic(".driftignore", b"build/\n")
    result = await scan_and_record(scanner)
    assert kinds(result) == [("added", "notes.tmp"), ("modified", ".driftignore")] or kinds(
        result
    ) == [("modified", ".driftignore"), ("added", "notes.tmp")]


async def test_scanning_a_subtree_reports_only_there(
    memfs: MemFileSystem, clock: FakeClock
) -> None:
    memfs.mkdir("a")
    memfs.mkdir("b")
    memfs.write_atomic("a/1", b"1")
    memfs.write_atomic("b/2", b"2")
    scanner = await make(memfs, clock)
    await scan_and_record(scanner)
    clock.advance(5)
    memfs.write_atomic("a/1", b"one")
    memfs.write_atomic("b/2", b"two")
    memfs.write_atomic("a/new", b"n")
    result = await scanner.scan(["a/1", "a/new", "a/missing"])
    assert kinds(result) == [("added", "a/new"), ("modified", "a/1")] or kinds(result) == [
        ("modified", "a/1"),
        ("added", "a/new"),
    ]
    assert minimal_roots(["a/b", "a", "c/d", "c/de"]) == ["a", "c/d", "c/de"]


# -- on the real disk ---------------------------------------------------------------------------


def overwrite_in_place(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


async def test_racy_same_size_edit_is_caught(tmp_path: Path) -> None:
    """A same-size in-place edit that keeps the mtime (within the filesystem's resolution)."""
    target = tmp_path / "f"
    target.write_bytes(b"aaaa")
    mtime_ns = target.stat().st_mtime_ns
    clock = FakeClock(mtime_ns // 1_000_000 + 500)  # indexed 0.5 s after the write
    fs = OsFileSystem(tmp_path, mtime_resolution_ns=2_000_000_000)
    scanner = await make(fs, clock)
    await scan_and_record(scanner)
    overwrite_in_place(target, b"bbbb")
    os.utime(target, ns=(mtime_ns, mtime_ns))  # a coarse clock would have left it unchanged
    clock.advance(10)
    result = await scan_and_record(scanner)
    assert kinds(result) == [("modified", "f")]
    # and once indexed well after its mtime, the entry is not racy: a stat is all it costs
    clock.advance(10)
    again = await scanner.scan()
    assert (again.changes, again.files_hashed) == ([], 0)


async def test_without_racy_handling_the_edit_would_be_missed(tmp_path: Path) -> None:
    """The control for the test above: with a 1 ns resolution the same trick goes unseen."""
    target = tmp_path / "f"
    target.write_bytes(b"aaaa")
    mtime_ns = target.stat().st_mtime_ns
    clock = FakeClock(mtime_ns // 1_000_000 + 500)
    fs = OsFileSystem(tmp_path, mtime_resolution_ns=1)
    scanner = await make(fs, clock)
    await scan_and_record(scanner)
    overwrite_in_place(target, b"bbbb")
    os.utime(target, ns=(mtime_ns, mtime_ns))
    assert (await scanner.scan()).changes == []


async def test_symlinks_out_of_the_folder_are_recorded_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    (root / "out").symlink_to(outside)
    (
        root
        / "bad-\udcff-name".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    ).write_bytes(b"x")
    scanner = await make(OsFileSystem(root), FakeClock(time.time_ns() // 1_000_000))
    result = await scanner.scan()
    assert kinds(result) == [("added", "out")]
    assert result.changes[0].new is not None
    assert result.changes[0].new.kind is FileKind.SYMLINK
    assert [e.reason for e in result.errors] == [
        "the name is not valid UTF-8: rename it to sync it"
    ]


async def rescan_unchanged(tmp_path: Path, files: int) -> tuple[float, ScanResult]:
    root = tmp_path / "tree"
    for i in range(files):
        d = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        (d / f"file-{i:06d}.txt").write_bytes(b"x" * (i % 7))
    executor = ThreadExecutor(4)
    try:
        index = await LocalIndex.open(str(tmp_path / "index.db"), executor)
        clock = FakeClock(time.time_ns() // 1_000_000 + 60_000)  # nothing racy
        scanner = Scanner(
            OsFileSystem(root), index, executor=executor, clock=clock, stable_interval_s=0.0
        )
        first = await scan_and_record(scanner)
        assert len(first.changes) == files + files // 100
        clock.advance(60)
        started = time.perf_counter()
        again = await scanner.scan()
        elapsed = time.perf_counter() - started
        await index.close()
    finally:
        executor.shutdown()
    return elapsed, again


async def test_rescan_of_5k_unchanged_files_is_stat_only(tmp_path: Path) -> None:
    elapsed, result = await rescan_unchanged(tmp_path, 5_000)
    assert (result.changes, result.files_hashed, result.files_seen) == ([], 0, 5_000)
    assert elapsed < 2.0, f"rescan of 5k unchanged files took {elapsed:.2f}s"


@pytest.mark.slow
async def test_rescan_of_100k_unchanged_files_within_3s(tmp_path: Path) -> None:
    elapsed, result = await rescan_unchanged(tmp_path, 100_000)
    print(f"rescan of 100k unchanged files: {elapsed:.2f}s")
    assert (result.changes, result.files_hashed, result.files_seen) == ([], 0, 100_000)
    assert elapsed <= 3.0, f"rescan of 100k unchanged files took {elapsed:.2f}s"


async def test_nested_directory_moves_apply_in_order(
    memfs: MemFileSystem, clock: FakeClock
) -> None:
    memfs.mkdir("a/sub", parents=True)
    memfs.write_atomic("a/sub/f", b"f")
    memfs.write_atomic("a/g", b"g")
    memfs.mkdir("p/q", parents=True)
    memfs.write_atomic("p/q/h", b"h")
    scanner = await make(memfs, clock)
    await scan_and_record(scanner)
    clock.advance(5)
    memfs.rename("a", "b")
    memfs.rename("b/sub", "c")  # out of the moved directory
    memfs.rename("p", "r")
    memfs.rename("r/q", "r/q2")  # renamed inside the moved directory
    result = await scan_and_record(scanner)
    moves = [(c.src, c.path) for c in result.changes if c.kind is ChangeKind.MOVED]
    assert sorted(moves) == sorted([("a", "b"), ("b/sub", "c"), ("p", "r"), ("r/q", "r/q2")])
    assert [c for c in result.changes if c.kind is not ChangeKind.MOVED] == []
    assert sorted(await scanner.index.entries()) == ["b", "b/g", "c", "c/f", "r", "r/q2", "r/q2/h"]
    clock.advance(5)
    assert (await scanner.scan()).changes == []


async def test_leftover_temp_files_are_listed_not_synced(
    memfs: MemFileSystem, clock: FakeClock
) -> None:
    memfs.mkdir("d")
    memfs.arm_crash("write.before_rename")
    with pytest.raises(SimulatedCrash):
        memfs.write_atomic("d/f", b"data")
    rebooted = memfs.crash()
    rebooted.write_atomic("d/.~drift-0123456789abcdef.tmp", b"left by a crash")
    scanner = await make(rebooted, clock)
    result = await scanner.scan()
    assert kinds(result) == [("added", "d")]
    assert result.temp_files == ["d/.~drift-0123456789abcdef.tmp"]


async def test_odd_scan_roots_are_harmless(memfs: MemFileSystem, clock: FakeClock) -> None:
    memfs.write_atomic("f", b"1")
    scanner = await make(memfs, clock)
    result = await scanner.scan(["../outside", "f/under-a-file", "nope"])
    assert (result.changes, result.errors) == ([], [])


async def test_watcher_batches_feed_the_scanner(tmp_path: Path) -> None:
    """End to end on the real disk: an OS event, a debounced batch, a subtree scan, a change."""
    executor = ThreadExecutor(2)
    clock = SystemClock()
    try:
        index = await LocalIndex.open(":memory:", executor)
        fs = OsFileSystem(tmp_path)
        scanner = Scanner(fs, index, executor=executor, clock=clock, stable_interval_s=0.05)
        await scan_and_record(scanner)
        watcher = Watcher(
            tmp_path,
            clock=clock,
            executor=executor,
            ignore_rules=lambda: scanner.ignore,
            debounce_ms=30,
        )
        async with watcher:
            (tmp_path / "docs").mkdir()
            (tmp_path / "docs" / "new.txt").write_bytes(b"hello")
            found: list[tuple[str, str]] = []

            async def until_seen() -> None:
                while ("added", "docs/new.txt") not in found:
                    batch = await watcher.next_batch()
                    result = await scan_and_record(scanner, *batch.paths)
                    found.extend(kinds(result))

            await asyncio.wait_for(until_seen(), 10)
        assert ("added", "docs") in found
        await index.close()
    finally:
        executor.shutdown()


async def test_a_vanished_folder_is_an_error_not_a_mass_deletion(tmp_path: Path) -> None:
    root = tmp_path / "mount"
    root.mkdir()
    (root / "f").write_bytes(b"precious")
    fs = OsFileSystem(root)
    clock = FakeClock(time.time_ns() // 1_000_000 + 60_000)
    scanner = await make(fs, clock)
    await scan_and_record(scanner)
    (root / "f").unlink()
    root.rmdir()
    result = await scan_and_record(scanner)
    assert result.changes == []
    assert [(e.path, e.op) for e in result.errors] == [("", "scan")]


async def test_a_missing_folder_marker_stops_the_scan(
    memfs: MemFileSystem, clock: FakeClock
) -> None:
    memfs.mkdir(".drift")
    memfs.write_atomic("f", b"1")
    index = await LocalIndex.open(":memory:", InlineExecutor())
    scanner = Scanner(memfs, index, executor=InlineExecutor(), clock=clock, marker=".drift")
    assert kinds(await scan_and_record(scanner)) == [("added", "f")]
    memfs.remove_file("f")
    memfs.rmdir(".drift")  # what an empty mount point looks like
    result = await scan_and_record(scanner)
    assert result.changes == []
    assert "is the folder's disk mounted" in result.errors[0].reason


@pytest.mark.parametrize(
    ("tree_has_it_at", "kept"),
    [("a", "n"), ("archive/a", None), (None, None)],
    ids=["still-there", "moved-elsewhere", "deleted"],
)
async def test_a_path_back_on_disk_keeps_its_entry_only_where_the_tree_still_holds_it(
    memfs: MemFileSystem, clock: FakeClock, tree_has_it_at: str | None, kept: str | None
) -> None:
    memfs.write_atomic("a", b"same")
    def entry_kept(path: str, node_id: str) -> bool:  # the row at "a" was synced as "a"
        return node_id == "n" and tree_has_it_at == path

    scanner = await make(memfs, clock, entry_kept=entry_kept)
    await scan_and_record(scanner)
    await scanner.index.mark_synced("a", node_id="n", version=b"v", chunks=())
    clock.advance(10)
    memfs.remove_file("a")
    await scan_and_record(scanner)  # deleted here, not yet published
    memfs.write_atomic("a", b"same")  # put back: the same bytes
    clock.advance(10)
    result = await scan_and_record(scanner)
    assert kinds(result) == [("added", "a")]
    entry = await scanner.index.get("a")
    assert entry is not None
    assert (entry.state, entry.node_id) == (SyncState.NEW, kept)
    assert result.changes[0].new is not None
    assert result.changes[0].new.node_id == kept
