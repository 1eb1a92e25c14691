"""One contract for every FileSystem: the same tests on the real disk and on MemFileSystem."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from peer.fs import (
    MISSING,
    TRASH_DIR,
    AlreadyExistsError,
    ChangedUnderneathError,
    DirNotEmptyError,
    FileKind,
    FileSystem,
    IsADirError,
    MemFileSystem,
    NotADirError,
    NotFoundError,
    OsFileSystem,
    SymlinkInPathError,
    UnsafePathError,
    is_temp_name,
)


@pytest.fixture(params=["os", "mem", "mem-ci"])
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FileSystem]:
    """The real disk here (case-sensitive ext4), MemFileSystem, and a case-insensitive one."""
    if request.param == "os":
        root = tmp_path / "root"
        root.mkdir()
        yield OsFileSystem(root)
    elif request.param == "mem":
        yield MemFileSystem(seed=1)
    else:
        yield MemFileSystem.from_uri("mem://?seed=1&case_insensitive=1")


def names(fs: FileSystem, path: str = "") -> list[str]:
    return sorted(info.name for info in fs.list_dir(path))


def test_write_then_read_back(fs: FileSystem) -> None:
    info = fs.write_atomic("a.txt", b"hello world")
    assert (info.name, info.kind, info.size) == ("a.txt", FileKind.FILE, 11)
    assert fs.read_range("a.txt", 6, 100) == b"world"
    assert fs.read_range("a.txt", 0, 5) == b"hello"
    assert fs.read_range("a.txt", 20, 5) == b""
    with fs.open_read("a.txt") as stream:
        assert stream.read() == b"hello world"
    assert fs.lstat("a.txt") == info
    assert names(fs) == ["a.txt"]


def test_write_streams_chunks_and_sets_mtime_and_exec_bit(fs: FileSystem) -> None:
    mtime = 1_600_000_000_000_000_000
    info = fs.write_atomic(
        "run.sh", iter([b"#!/bin/sh\n", b"echo hi\n"]), mtime_ns=mtime, executable=True
    )
    assert info.size == 18
    assert info.mtime_ns == mtime
    assert info.executable
    fs.set_meta("run.sh", executable=False, mtime_ns=mtime + 2_000_000_000)
    after = fs.lstat("run.sh")
    assert not after.executable
    assert after.mtime_ns == mtime + 2_000_000_000


def test_write_replaces_and_leaves_no_temp_file(fs: FileSystem) -> None:
    first = fs.write_atomic("f", b"one")
    second = fs.write_atomic("f", b"two!", expect=first)
    assert fs.read_range("f", 0, 10) == b"two!"
    assert second.size == 4
    assert names(fs) == ["f"]
    assert not any(is_temp_name(n) for n in names(fs))


def test_write_guard_refuses_and_keeps_the_existing_file(fs: FileSystem) -> None:
    stale = fs.write_atomic("f", b"original", mtime_ns=1_000_000_000)
    fs.write_atomic("f", b"edited by the user", mtime_ns=5_000_000_000)
    with pytest.raises(ChangedUnderneathError):
        fs.write_atomic("f", b"remote", expect=stale)
    with pytest.raises(ChangedUnderneathError):
        fs.write_atomic("f", b"remote", expect=MISSING)
    assert fs.read_range("f", 0, 100) == b"edited by the user"
    assert names(fs) == ["f"]
    fs.write_atomic("g", b"new", expect=MISSING)
    assert fs.read_range("g", 0, 10) == b"new"


def test_write_over_a_directory_is_refused(fs: FileSystem) -> None:
    fs.mkdir("d")
    with pytest.raises(IsADirError):
        fs.write_atomic("d", b"x")
    assert names(fs) == ["d"]


def test_mkdir_and_rmdir(fs: FileSystem) -> None:
    fs.mkdir("a/b/c", parents=True)
    assert fs.lstat("a/b").kind is FileKind.DIR
    with pytest.raises(AlreadyExistsError):
        fs.mkdir("a/b")
    with pytest.raises(NotFoundError):
        fs.mkdir("x/y")
    fs.write_atomic("a/b/c/f", b"1")
    with pytest.raises(DirNotEmptyError):
        fs.rmdir("a/b/c")
    fs.remove_file("a/b/c/f")
    fs.rmdir("a/b/c")
    assert names(fs, "a/b") == []
    fs.write_atomic("file", b"")
    with pytest.raises(NotADirError):
        fs.mkdir("file/sub", parents=True)
    with pytest.raises(NotADirError):
        fs.list_dir("file")


def test_rename_moves_and_refuses_to_clobber(fs: FileSystem) -> None:
    fs.mkdir("src")
    fs.mkdir("dst")
    fs.write_atomic("src/f", b"data")
    fs.write_atomic("dst/f", b"other")
    with pytest.raises(AlreadyExistsError):
        fs.rename("src/f", "dst/f")
    assert fs.read_range("dst/f", 0, 10) == b"other"
    fs.rename("src/f", "dst/g")
    assert names(fs, "src") == []
    assert fs.read_range("dst/g", 0, 10) == b"data"
    fs.rename("dst/g", "dst/f", replace=True)
    assert names(fs, "dst") == ["f"]
    assert fs.read_range("dst/f", 0, 10) == b"data"


def test_rename_keeps_the_inode_and_moves_whole_directories(fs: FileSystem) -> None:
    fs.mkdir("a/b", parents=True)
    info = fs.write_atomic("a/b/f", b"x")
    fs.rename("a", "z")
    assert fs.lstat("z/b/f").inode == info.inode
    with pytest.raises(NotFoundError):
        fs.lstat("a")


def test_rename_into_itself_is_refused(fs: FileSystem) -> None:
    fs.mkdir("a/b", parents=True)
    with pytest.raises(Exception, match="into itself"):
        fs.rename("a", "a/b/c")
    assert fs.lstat("a/b").kind is FileKind.DIR


def test_case_only_rename(fs: FileSystem) -> None:
    info = fs.write_atomic("readme.md", b"hi")
    fs.rename("readme.md", "README.md")
    assert names(fs) == ["README.md"]
    assert fs.lstat("README.md").inode == info.inode


def test_trash_moves_out_of_the_way_and_never_overwrites(fs: FileSystem) -> None:
    fs.mkdir("docs")
    fs.write_atomic("docs/a", b"v1")
    first = fs.trash("docs/a", tag="t1")
    assert first == f"{TRASH_DIR}/t1/docs/a"
    fs.write_atomic("docs/a", b"v2")
    second = fs.trash("docs/a", tag="t1")
    assert second == f"{TRASH_DIR}/t1/docs/a.1"
    assert fs.read_range(first, 0, 9) == b"v1"
    assert fs.read_range(second, 0, 9) == b"v2"
    assert names(fs, "docs") == []
    with pytest.raises(UnsafePathError):
        fs.trash(first, tag="t2")
    with pytest.raises(UnsafePathError):
        fs.trash("docs", tag="../x")


def test_symlinks_are_reported_never_followed(fs: FileSystem) -> None:
    fs.mkdir("real")
    fs.write_atomic("real/f", b"x")
    fs.symlink("link", "real")
    fs.symlink("flink", "real/f")
    info = fs.lstat("link")
    assert info.kind is FileKind.SYMLINK
    assert fs.read_link("link") == "real"
    assert {i.name: i.kind for i in fs.list_dir("")}["flink"] is FileKind.SYMLINK
    with pytest.raises(SymlinkInPathError):
        fs.lstat("link/f")
    with pytest.raises(SymlinkInPathError):
        fs.write_atomic("link/new", b"y")
    with pytest.raises(SymlinkInPathError):
        fs.list_dir("link")
    with pytest.raises((SymlinkInPathError, NotFoundError)):
        fs.read_range("flink", 0, 1)
    fs.remove_file("link")
    assert names(fs, "real") == ["f"]


@pytest.mark.parametrize(
    "bad", ["/etc/passwd", "..", "../x", "a/../../x", "a//b", "./a", "a/", "a\x00b", "a/."]
)
def test_unsafe_paths_are_refused_before_any_io(fs: FileSystem, bad: str) -> None:
    with pytest.raises(UnsafePathError):
        fs.write_atomic(bad, b"x")
    with pytest.raises(UnsafePathError):
        fs.lstat(bad)
    with pytest.raises(UnsafePathError):
        fs.mkdir(bad, parents=True)
    with pytest.raises(UnsafePathError):
        fs.rename("x", bad)
    assert names(fs) == []


def test_missing_entries_give_not_found(fs: FileSystem) -> None:
    with pytest.raises(NotFoundError):
        fs.lstat("nope")
    with pytest.raises(NotFoundError):
        fs.read_range("nope", 0, 1)
    with pytest.raises(NotFoundError):
        fs.rename("nope", "x")
    with pytest.raises(NotFoundError):
        fs.trash("nope", tag="t")
    fs.mkdir("d")
    with pytest.raises(IsADirError):
        fs.remove_file("d")
    with pytest.raises(IsADirError):
        fs.read_range("d", 0, 1)


def test_root_lstat_is_a_directory(fs: FileSystem) -> None:
    assert fs.lstat("").kind is FileKind.DIR
    with pytest.raises(UnsafePathError):
        fs.rename("", "x")


# -- the real disk only ------------------------------------------------------------------------


def test_os_symlinked_dir_cannot_lead_outside(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    (root / "escape").symlink_to(outside)
    fs = OsFileSystem(root)
    with pytest.raises(SymlinkInPathError):
        fs.read_range("escape/secret", 0, 1)
    with pytest.raises(SymlinkInPathError):
        fs.write_atomic("escape/planted", b"x")
    with pytest.raises(SymlinkInPathError):
        fs.trash("escape/secret", tag="t")
    assert sorted(os.listdir(outside)) == ["secret"]


def test_os_fifo_is_not_opened_for_reading(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    fs = OsFileSystem(tmp_path)
    assert fs.lstat("pipe").kind is FileKind.OTHER
    with pytest.raises(Exception, match="not a regular file"):
        fs.read_range("pipe", 0, 1)


def test_os_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    fs = OsFileSystem(tmp_path)

    def chunks() -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        fs.write_atomic("f", chunks())
    assert os.listdir(tmp_path) == []


def test_os_detects_case_sensitivity(tmp_path: Path) -> None:
    fs = OsFileSystem(tmp_path)
    probe = tmp_path / "Probe"
    probe.write_bytes(b"")
    expected = (tmp_path / "probe").exists()
    assert fs.case_insensitive is expected
    assert sorted(os.listdir(tmp_path)) == ["Probe"]
