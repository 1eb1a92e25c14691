"""MemFileSystem only: URI options, case-insensitivity, mtime resolution and crash points."""

from __future__ import annotations

import contextlib
import random

import pytest

from peer.fs import (
    CRASH_POINTS,
    AlreadyExistsError,
    MemFileSystem,
    NotFoundError,
    SimulatedCrash,
    is_temp_name,
)


class FakeClock:
    def __init__(self, ms: int = 1_700_000_000_123) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000

    async def sleep(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


def test_from_uri_options() -> None:
    fs = MemFileSystem.from_uri("mem://?seed=7&case_insensitive=1&mtime_res_s=2")
    assert fs.seed == 7
    assert fs.case_insensitive
    assert fs.mtime_resolution_ns == 2_000_000_000
    plain = MemFileSystem.from_uri("mem://")
    assert not plain.case_insensitive
    assert plain.mtime_resolution_ns == 1
    with pytest.raises(ValueError, match="unknown mem:// options"):
        MemFileSystem.from_uri("mem://?case_insenstive=1")
    with pytest.raises(ValueError, match="not a mem:// URI"):
        MemFileSystem.from_uri("file:///tmp")
    with pytest.raises(ValueError, match="unknown crash point"):
        MemFileSystem.from_uri("mem://?crash=nowhere")


def test_mtime_is_truncated_to_the_resolution() -> None:
    fs = MemFileSystem.from_uri("mem://?mtime_res_s=2", clock=FakeClock(1_700_000_003_999))
    assert fs.write_atomic("f", b"x").mtime_ns == 1_700_000_002_000_000_000
    fs.set_meta("f", mtime_ns=1_000_000_001_500_000_000)
    assert fs.lstat("f").mtime_ns == 1_000_000_000_000_000_000


def test_case_insensitive_lookup_and_case_only_rename() -> None:
    fs = MemFileSystem.from_uri("mem://?case_insensitive=1")
    fs.mkdir("Docs")
    fs.write_atomic("docs/Readme.md", b"hi")
    assert fs.read_range("DOCS/README.MD", 0, 9) == b"hi"
    with pytest.raises(AlreadyExistsError):
        fs.mkdir("DOCS")
    fs.rename("Docs/Readme.md", "Docs/README.md")
    assert [i.name for i in fs.list_dir("docs")] == ["README.md"]
    # NFC and NFD spell one name, as on macOS
    fs.write_atomic("caf\u00e9", b"1")
    assert fs.read_range("cafe\u0301", 0, 1) == b"1"


def test_case_sensitive_mem_keeps_both_spellings() -> None:
    fs = MemFileSystem()
    fs.write_atomic("a", b"1")
    fs.write_atomic("A", b"2")
    assert sorted(i.name for i in fs.list_dir("")) == ["A", "a"]


@pytest.mark.parametrize("point", ["write.before_fsync", "write.before_rename"])
def test_crash_before_the_rename_keeps_the_old_file(point: str) -> None:
    fs = MemFileSystem(seed=3)
    fs.write_atomic("f", b"old")
    fs.arm_crash(point)
    with pytest.raises(SimulatedCrash):
        fs.write_atomic("f", b"new")
    with pytest.raises(SimulatedCrash):
        fs.lstat("f")
    after = fs.crash()
    assert after.snapshot() == {"f": b"old"}


def test_crash_before_dir_fsync_loses_the_rename_not_the_old_data() -> None:
    fs = MemFileSystem(seed=3)
    fs.write_atomic("f", b"old")
    fs.arm_crash("write.before_dir_fsync")
    with pytest.raises(SimulatedCrash):
        fs.write_atomic("f", b"new")
    assert fs.crash().snapshot() == {"f": b"old"}


def test_unsynced_writes_are_lost_and_temp_files_may_remain() -> None:
    fs = MemFileSystem(seed=3)
    fs.mkdir("d")
    fs.arm_crash("write.before_rename")
    with pytest.raises(SimulatedCrash):
        fs.write_atomic("d/f", b"data")
    after = fs.crash()
    # the temp file's data was fsynced, but its directory entry never was
    assert after.snapshot() == {"d": None}


def test_crash_without_a_point_keeps_exactly_what_was_made_durable() -> None:
    fs = MemFileSystem(seed=3)
    fs.write_atomic("kept", b"1")
    fs.symlink("link", "kept")  # no directory fsync: a crash may drop it
    fs.set_meta("kept", mtime_ns=5)  # metadata without fsync
    fs.remove_file("kept")  # unlink without fsync: it comes back
    after = fs.crash()
    assert after.snapshot() == {"kept": b"1"}
    assert after.lstat("kept").mtime_ns != 5
    after.write_atomic("more", b"2")
    assert after.crash().snapshot() == {"kept": b"1", "more": b"2"}


def test_crash_during_rename_leaves_it_in_one_place() -> None:
    fs = MemFileSystem(seed=3)
    fs.mkdir("a")
    fs.mkdir("b")
    fs.write_atomic("a/f", b"x")
    fs.arm_crash("rename.before_dir_fsync")
    with pytest.raises(SimulatedCrash):
        fs.rename("a/f", "b/f")
    snap = fs.crash().snapshot()
    assert snap in ({"a": None, "b": None, "a/f": b"x"}, {"a": None, "b": None, "b/f": b"x"})


def test_random_crashes_never_lose_an_acknowledged_write(seed: int | None) -> None:
    """Seeded: random writes/renames/mkdirs, a crash at a random point; every write that
    returned must survive with its bytes (or its latest acknowledged bytes)."""
    base = seed if seed is not None else 20261125
    for run in range(40):
        rng = random.Random(base + run)
        fs = MemFileSystem(seed=run)
        fs.arm_crash(rng.choice(sorted(CRASH_POINTS)), nth=rng.randint(1, 6))
        acked: dict[str, bytes] = {}
        moving: tuple[str, str] | None = None
        try:
            for step in range(60):
                name = f"d{rng.randint(0, 2)}/f{rng.randint(0, 4)}"
                roll = rng.random()
                if roll < 0.15:
                    with contextlib.suppress(AlreadyExistsError):
                        fs.mkdir(name.split("/")[0])
                elif roll < 0.85:
                    data = f"{run}.{step}".encode()
                    try:
                        fs.write_atomic(name, data)
                    except NotFoundError:
                        continue
                    acked[name] = data
                elif acked:
                    src = rng.choice(sorted(acked))
                    dst = f"{src.split('/')[0]}/m{step}"
                    moving = (src, dst)
                    fs.rename(src, dst)
                    acked[dst] = acked.pop(src)
                    moving = None
        except SimulatedCrash:
            pass
        snap = fs.crash().snapshot()
        files = {p: d for p, d in snap.items() if isinstance(d, bytes)}
        if moving is not None:  # a rename the crash interrupted: either place is right
            src, dst = moving
            data = acked.pop(src)
            assert data in (files.get(src), files.get(dst)), f"seed={base + run}: {src} lost"
        for path, data in acked.items():
            assert files.get(path) == data, f"seed={base + run}: {path} lost"
        leftovers = [p for p in files if is_temp_name(p.rpartition("/")[2])]
        assert not leftovers, f"seed={base + run}: temp entries were never made durable"
