"""Named races from CRDT.md: each ends with every replica showing the same, loss-free tree."""

from __future__ import annotations

import pytest

from crdt.errors import AlreadyExists, InvalidOperation, NotFound
from crdt.events import Appeared, ContentChanged, Disappeared, Moved, Renamed
from crdt.tree import FileContent, FolderTree, LocalUpdate
from crdt.view import EntryKind
from tests.crdt.crdt_sim import identity


def content(tag: bytes, mtime_ms: int = 1_000) -> FileContent:
    return FileContent(tag, len(tag), mtime_ms)


class Net:
    """N replicas; ``sync()`` delivers every update to every replica (any order works)."""

    def __init__(self, n: int = 2) -> None:
        self.trees = [FolderTree(identity(i)) for i in range(n)]
        self.ids = {t.replica: t.identity for t in self.trees}
        self.log: list[LocalUpdate] = []
        self.now = 1_000

    def do(self, i: int, op: str, *args: object, **kw: object) -> LocalUpdate:
        self.now += 1
        up: LocalUpdate = getattr(self.trees[i], op)(*args, now_ms=self.now, **kw)
        self.log.append(up)
        return up

    def sync(self) -> None:
        for t in self.trees:
            for up in reversed(self.log):  # newest first: exercises the pending queue
                if up.replica != t.replica:
                    t.receive(self.ids[up.replica], up.seq, up.seen, up.update)
        for t in self.trees:
            assert not t.pending()
            assert t.listing() == self.trees[0].listing()
            assert t.view.entries == t.full_recompute().entries

    def listing(self) -> dict[str, tuple[str, bytes | None]]:
        return self.trees[0].listing()


@pytest.fixture
def net() -> Net:
    n = Net(3)
    n.do(0, "mkdir", "a")
    n.do(0, "mkdir", "b")
    n.do(0, "create_file", "a/f.txt", content(b"f"))
    n.sync()
    return n


def test_crossed_moves_keep_both_folders(net: Net) -> None:
    net.do(0, "move", "a", "b")
    net.do(1, "move", "b", "a")
    net.sync()
    paths = set(net.listing())
    # The earlier move (in total order) wins; the later one would make a cycle and is skipped.
    assert paths in ({"b", "b/a", "b/a/f.txt"}, {"a", "a/b", "a/f.txt"})


def test_three_way_cycle_is_broken_the_same_way_everywhere(net: Net) -> None:
    net.do(0, "mkdir", "c")
    net.sync()
    net.do(0, "move", "a", "b")
    net.do(1, "move", "b", "c")
    net.do(2, "move", "c", "a")
    net.sync()
    listing = net.listing()
    assert {p.rsplit("/", 1)[-1] for p, (k, _) in listing.items() if k == "dir"} == {"a", "b", "c"}
    assert "f.txt" in {p.rsplit("/", 1)[-1] for p in listing}
    assert sum(1 for p, (k, _) in listing.items() if k == "dir" and "/" not in p) == 1


def test_case_rename_race_gives_one_name_and_one_suffix(net: Net) -> None:
    net.do(0, "create_file", "b/x.txt", content(b"x"))
    net.do(1, "create_file", "b/other.txt", content(b"o"))
    net.sync()
    net.do(0, "rename", "b/x.txt", "Report.txt")
    net.do(1, "rename", "b/other.txt", "report.TXT")
    net.sync()
    names = sorted(p for p in net.listing() if p.startswith("b/"))
    assert len(names) == 2
    assert sum("(name conflict" in n for n in names) == 1


def test_nfc_and_nfd_names_collide(net: Net) -> None:
    net.do(0, "create_file", "b/caf\u00e9", content(b"1"))
    net.do(1, "create_file", "b/cafe\u0301", content(b"2"))
    net.sync()
    names = [p for p in net.listing() if p.startswith("b/")]
    assert len(names) == 2
    assert sum("(name conflict" in n for n in names) == 1
    with pytest.raises(AlreadyExists):
        net.trees[0].create_file("b/CAFE\u0301", content(b"3"), now_ms=5)


def test_equal_files_with_same_name_show_once(net: Net) -> None:
    net.do(0, "create_file", "b/same.bin", content(b"S"))
    net.do(1, "create_file", "b/SAME.bin", content(b"S"))
    net.sync()
    assert [p for p in net.listing() if p.startswith("b/")] == ["b/same.bin"] or \
        [p for p in net.listing() if p.startswith("b/")] == ["b/SAME.bin"]
    entry = next(e for p, e in net.trees[0].walk() if p.lower() == "b/same.bin")
    assert len(entry.nodes) == 2
    # An edit of the shown file edits both nodes, so they stay one file.
    net.do(2, "edit", "b/same.bin", content(b"T"))
    net.sync()
    assert [k for p, k in net.listing().items() if p.startswith("b/")] == [("file", b"T")]


def test_photos_and_capital_photos_merge(net: Net) -> None:
    net.do(0, "mkdir", "Photos")
    net.do(0, "create_file", "Photos/1.jpg", content(b"1"))
    net.do(1, "mkdir", "photos")
    net.do(1, "create_file", "photos/2.jpg", content(b"2"))
    net.sync()
    folders = [p for p, (k, _) in net.listing().items() if k == "dir" and p.lower() == "photos"]
    assert len(folders) == 1
    top = folders[0]
    assert {f"{top}/1.jpg", f"{top}/2.jpg"} <= set(net.listing())
    # New files go into the merged folder; deleting it deletes both nodes and their files.
    net.do(2, "create_file", "PHOTOS/3.jpg", content(b"3"))
    net.sync()
    assert f"{top}/3.jpg" in net.listing()
    net.do(1, "delete", top)
    net.sync()
    assert not [p for p in net.listing() if p.lower().startswith("photos")]


def test_delete_races_edit_and_edit_wins(net: Net) -> None:
    net.do(0, "delete", "a/f.txt")
    net.do(1, "edit", "a/f.txt", content(b"edited"))
    net.sync()
    assert net.listing()["a/f.txt"] == ("file", b"edited")


def test_delete_races_move_and_move_wins(net: Net) -> None:
    net.do(0, "delete", "a/f.txt")
    net.do(1, "move", "a/f.txt", "b")
    net.sync()
    assert "b/f.txt" in net.listing()


def test_rm_r_races_create_inside_and_the_new_file_survives(net: Net) -> None:
    net.do(0, "create_file", "a/old.txt", content(b"o"))
    net.sync()
    net.do(0, "delete", "a")
    net.do(1, "create_file", "a/new.txt", content(b"n"))
    net.sync()
    # The folder comes back holding only what was added concurrently.
    assert {p for p in net.listing() if p.startswith("a")} == {"a", "a/new.txt"}


def test_three_concurrent_edits_keep_every_version(net: Net) -> None:
    for i, tag in enumerate([b"v0", b"v1", b"v2"]):
        net.do(i, "edit", "a/f.txt", content(tag))
    net.sync()
    listing = net.listing()
    shown = {m for p, (k, m) in listing.items() if p.startswith("a/f")}
    assert shown == {b"v0", b"v1", b"v2"}
    copies = [p for p, (k, _) in listing.items() if k == EntryKind.CONFLICTED_COPY.value]
    assert len(copies) == 2
    assert all("(conflicted copy " in p and p.endswith(".txt") for p in copies)


def test_delete_of_conflicted_copy_resolves_it(net: Net) -> None:
    net.do(0, "edit", "a/f.txt", content(b"mine"))
    net.do(1, "edit", "a/f.txt", content(b"theirs"))
    net.sync()
    copy = next(p for p, (k, _) in net.listing().items() if k == "conflicted_copy")
    current = net.listing()["a/f.txt"]
    up = net.do(2, "delete", copy)
    assert any(isinstance(e, Disappeared) and e.path == copy for e in up.events)
    net.sync()
    assert net.listing()["a/f.txt"] == current
    assert not [p for p, (k, _) in net.listing().items() if k == "conflicted_copy"]


def test_resolve_keeping_the_copy_makes_it_current(net: Net) -> None:
    net.do(0, "edit", "a/f.txt", content(b"mine"))
    net.do(1, "edit", "a/f.txt", content(b"theirs"))
    net.sync()
    copy = next(p for p, (k, _) in net.listing().items() if k == "conflicted_copy")
    copied = net.listing()[copy][1]
    net.do(0, "resolve", copy, keep="copy")
    net.sync()
    assert net.listing()["a/f.txt"] == ("file", copied)


def test_editing_a_conflicted_copy_forks_a_real_file(net: Net) -> None:
    net.do(0, "edit", "a/f.txt", content(b"mine"))
    net.do(1, "edit", "a/f.txt", content(b"theirs"))
    net.sync()
    copy = next(p for p, (k, _) in net.listing().items() if k == "conflicted_copy")
    net.do(2, "edit", copy, content(b"forked"))
    net.sync()
    assert net.listing()[copy] == ("file", b"forked")


def test_events_name_what_changed(net: Net) -> None:
    t = net.trees[0]
    up = t.rename("a/f.txt", "g.txt", now_ms=5)
    assert up.events == (Renamed("a/f.txt", "a/g.txt", EntryKind.FILE, up.events[0].entry_id),)
    up = t.move("a/g.txt", "b", now_ms=6)
    assert isinstance(up.events[0], Moved)
    assert up.events[0].path == "b/g.txt"
    up = t.edit("b/g.txt", content(b"new"), now_ms=7)
    assert isinstance(up.events[0], ContentChanged)
    up = t.mkdir("a/sub", now_ms=8)
    assert isinstance(up.events[0], Appeared)
    up = t.delete("a", now_ms=9)
    assert [type(e) for e in up.events] == [Disappeared, Disappeared]
    assert [e.path for e in up.events] == ["a/sub", "a"]  # deepest first


def test_remote_events_match_local_ones(net: Net) -> None:
    up = net.do(0, "rename", "a", "z")
    result = net.trees[1].receive(net.ids[up.replica], up.seq, up.seen, up.update)
    assert result.events == up.events


def test_local_operations_refuse_bad_requests(net: Net) -> None:
    t = net.trees[0]
    with pytest.raises(NotFound):
        t.edit("nope", content(b"x"), now_ms=1)
    with pytest.raises(AlreadyExists):
        t.mkdir("A", now_ms=1)
    with pytest.raises(InvalidOperation):
        t.move("a", "a", now_ms=1)
    with pytest.raises(InvalidOperation):
        t.edit("a", content(b"x"), now_ms=1)
    with pytest.raises(InvalidOperation):
        t.mkdir("a/f.txt/x", now_ms=1)
    with pytest.raises(InvalidOperation):
        t.delete("", now_ms=1)
    before = t.version_vector()
    from crdt.errors import InvalidName
    for bad in ["..", "a\x00b", "x" * 256]:
        with pytest.raises(InvalidName):
            t.mkdir(bad, now_ms=1)
    assert t.version_vector() == before


def test_case_only_rename_is_allowed(net: Net) -> None:
    net.do(0, "rename", "a", "A")
    net.sync()
    assert "A/f.txt" in net.listing()


def test_lookup_history_and_node_paths(net: Net) -> None:
    t = net.trees[1]
    entry = t.lookup("A/F.TXT")
    assert entry is not None
    assert t.lookup("a/f.txt") == entry
    net.do(1, "rename", "a/f.txt", "g.txt")
    net.do(1, "edit", "a/g.txt", content(b"2"))
    assert t.path_of_node(entry.id) == "a/g.txt"
    hist = t.history(entry.id)
    assert [m.name for m in hist.moves] == ["f.txt", "g.txt"]
    assert [v.version.manifest for v in hist.versions] == [b"f", b"2"]
    assert [c.name for c in t.children("a")] == ["g.txt"]


def test_small_updates_do_not_replay_the_tree() -> None:
    a, b = FolderTree(identity(0)), FolderTree(identity(1))
    items = [(f"d{i // 50}/f{i}.txt", content(bytes([i % 250 + 1]))) for i in range(500)]
    first = a.import_tree(items, now_ms=1)
    b.receive(a.identity, first.seq, first.seen, first.update)
    inc = b.projection.inc
    up = a.edit("d0/f1.txt", content(b"new"), now_ms=2)
    b.receive(a.identity, up.seq, up.seen, up.update)
    up = a.rename("d1/f60.txt", "g.txt", now_ms=3)
    b.receive(a.identity, up.seq, up.seen, up.update)
    assert (inc.redone, inc.fallbacks) == (0, 0)
    # A concurrent move that sorts before b's own newer move undoes and redoes only that one.
    b.move("d2/f100.txt", "d3", now_ms=4)
    theirs = a.move("d2/f101.txt", "d4", now_ms=4)
    newest_b = max(b.index.moves.values(), key=lambda m: m.key)
    newest_a = max(a.index.moves.values(), key=lambda m: m.key)
    assert newest_a.t == newest_b.t
    assert newest_a.key < newest_b.key  # same Lamport time; the replica id decides
    b.receive(a.identity, theirs.seq, theirs.seen, theirs.update)
    assert inc.redone == 1
    assert b.view.entries == b.full_recompute().entries
