"""Hostile updates are refused with a reason and leave the document untouched."""

from __future__ import annotations

import json
import random

import pytest

from crdt.errors import UpdateRefused
from crdt.tree import FileContent, FolderTree, LocalUpdate, ReceiveStatus
from crdt.ydoc import ROOT_MAP
from crdt.yjs_codec import ClientRun, encode_update
from tests.crdt.crdt_sim import identity

A, B, C = identity(0), identity(1), identity(2)


def fc(tag: bytes) -> FileContent:
    return FileContent(tag, 1, 1_000)


@pytest.fixture
def trees() -> tuple[FolderTree, FolderTree]:
    """``a`` writes; ``b`` has applied everything ``a`` wrote."""
    a, b = FolderTree(A), FolderTree(B)
    for up in [a.mkdir("docs", now_ms=1), a.create_file("docs/x.txt", fc(b"x"), now_ms=2)]:
        b.receive(A, up.seq, up.seen, up.update)
    return a, b


def snapshot(t: FolderTree) -> tuple[bytes, dict[str, int], dict]:
    return t.doc.encode_state(), t.version_vector(), dict(t.view.entries)


def forge(author: FolderTree, records: list[tuple[str, list]], *, client: int | None = None,
          clock: int | None = None) -> bytes:
    """An update as ``author`` would send it next, with hand-written records."""
    entries = tuple((k, json.dumps(r, separators=(",", ":"), ensure_ascii=False))
                    for k, r in records)
    run = ClientRun(author.client_id if client is None else client,
                    author.log.next_clock(author.replica) if clock is None else clock, entries)
    return encode_update([run], ROOT_MAP)


def next_id(author: FolderTree, i: int = 0) -> str:
    return f"{author.replica}.{author.log.next_counter(author.replica) + i}"


def refused(b: FolderTree, update: bytes, *, who=A, seq: int | None = None,
            seen: dict[str, int] | None = None, author: FolderTree | None = None) -> str:
    before = snapshot(b)
    if seq is None:
        seq = b.log.have(who.replica) + 1
    if seen is None:
        seen = b.version_vector()
    with pytest.raises(UpdateRefused) as info:
        b.receive(who, seq, seen, update)
    assert snapshot(b) == before
    return info.value.reason


def valid_move(a: FolderTree, node: str, name: str = "y", parent: str = "root", t: int = 0,
               prev: list[str] | None = None) -> list:
    t = t or a.index.max_t + 1
    return ["m", t, 5, node, parent, name, prev if prev is not None else a.index.move_heads(node),
            None, []]


def test_honest_forgery_helper_is_accepted(trees: tuple[FolderTree, FolderTree]) -> None:
    a, b = trees
    node = a.lookup("docs").id
    upd = forge(a, [(next_id(a), valid_move(a, node, "renamed"))])
    assert b.receive(A, 3, b.version_vector(), upd).status is ReceiveStatus.APPLIED
    assert "renamed" in b.listing()


def test_another_devices_client_id_is_refused(trees: tuple[FolderTree, FolderTree]) -> None:
    a, b = trees
    node = a.lookup("docs").id
    upd = forge(a, [(next_id(a), valid_move(a, node))], client=b.client_id)
    assert "client id" in refused(b, upd)


def test_another_devices_op_ids_are_refused(trees: tuple[FolderTree, FolderTree]) -> None:
    a, b = trees
    node = a.lookup("docs").id
    upd = forge(a, [(f"{b.replica}.1", valid_move(a, node))])
    assert "next op id" in refused(b, upd)


def test_an_update_signed_by_another_device_is_refused(trees) -> None:
    a, _b = trees
    up = a.mkdir("z", now_ms=3)
    c = FolderTree(C)
    for r, s in a.missing_from({}):
        if s < up.seq:
            c.receive(A, s, a.update_seen(r, s), a.update_bytes(r, s))
    before = snapshot(c)
    with pytest.raises(UpdateRefused):
        c.receive(B, 1, up.seen, up.update)  # B claims A's update
    assert snapshot(c) == before


def test_a_delete_set_is_refused(trees: tuple[FolderTree, FolderTree]) -> None:
    a, b = trees
    node = a.lookup("docs").id
    upd = forge(a, [(next_id(a), valid_move(a, node))])
    with_deletes = upd[:-1] + bytes([1, b.client_id & 0x7F | 0x80]) + b"\x00"
    assert "not a well-formed update" in refused(b, with_deletes)
    # A syntactically valid delete set deleting A's first op.
    ds = bytearray(upd[:-1])
    ds += b"\x01"
    cid = a.client_id
    while cid > 0x7F:
        ds.append(0x80 | cid & 0x7F)
        cid >>= 7
    ds += bytes([cid, 1, 0, 1])
    assert "delete set" in refused(b, bytes(ds))


def test_overwriting_an_existing_op_key_is_refused(trees: tuple[FolderTree, FolderTree]) -> None:
    a, b = trees
    node = a.lookup("docs").id
    upd = forge(a, [(node, valid_move(a, node))])
    assert "next op id" in refused(b, upd)


def test_a_real_overwrite_from_pycrdt_is_refused(trees: tuple[FolderTree, FolderTree]) -> None:
    a, b = trees
    node = a.lookup("docs").id
    upd = a.doc.insert([(node, "overwritten")])  # what a buggy or hostile client would send
    assert refused(b, upd)


def test_an_inflated_lamport_time_is_refused(trees: tuple[FolderTree, FolderTree]) -> None:
    a, b = trees
    node = a.lookup("docs").id
    upd = forge(a, [(next_id(a), valid_move(a, node, t=10**9))])
    assert "exceeds the bound" in refused(b, upd)
    upd = forge(a, [(next_id(a), valid_move(a, node, t=1))])
    assert "not after" in refused(b, upd)


def test_the_lamport_bound_does_not_depend_on_what_the_receiver_has(trees) -> None:
    a, b = trees
    c = FolderTree(C)
    up_c = c.mkdir("c1", now_ms=1)
    for i in range(5):
        up_c = c.mkdir(f"c{i + 2}", now_ms=1)
    for r, s in c.missing_from({}):
        b.receive(C, s, c.update_seen(r, s), c.update_bytes(r, s))
    assert up_c.seq == 6
    node = a.lookup("docs").id
    # t = max t of what A saw + 1 is fine; b's larger max t from C does not widen A's bound.
    upd = forge(a, [(next_id(a), valid_move(a, node, t=b.index.max_t))])
    assert "exceeds the bound" in refused(b, upd, seen=a.version_vector())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: [*r[:5], "", *r[6:]],  # empty name
        lambda r: [*r[:5], ".", *r[6:]],
        lambda r: [*r[:5], "..", *r[6:]],
        lambda r: [*r[:5], "a/b", *r[6:]],
        lambda r: [*r[:5], "a\x00b", *r[6:]],
        lambda r: [*r[:5], "x" * 256, *r[6:]],
        lambda r: [*r[:1], 1.0, *r[2:]],  # float time
        lambda r: [*r[:1], True, *r[2:]],
        lambda r: [*r[:4], "nonsense", *r[5:]],  # parent not an op id
        lambda r: [*r[:3], "zzzzzzzzzz.99", *r[4:]],  # unknown node
        lambda r: [*r[:7], 1, *r[8:]],  # dir flag on a non-create
        lambda r: [*r[:6], [], *r[7:]],  # no prev
        lambda r: [*r, "extra"],
        lambda r: ["q", *r[1:]],
        lambda r: [*r[:8], ["zzzzzzzzzz.1"]],  # seen on a non-delete
    ],
)
def test_malformed_records_are_refused(trees, mutate) -> None:
    a, b = trees
    node = a.lookup("docs").id
    upd = forge(a, [(next_id(a), mutate(valid_move(a, node)))])
    assert refused(b, upd)


def test_non_canonical_json_is_refused(trees: tuple[FolderTree, FolderTree]) -> None:
    a, b = trees
    node = a.lookup("docs").id
    rec = json.dumps(valid_move(a, node))  # with spaces
    run = ClientRun(a.client_id, a.log.next_clock(a.replica), ((next_id(a), rec),))
    assert "canonical" in refused(b, encode_update([run], ROOT_MAP))


def test_a_version_of_a_folder_is_refused(trees: tuple[FolderTree, FolderTree]) -> None:
    a, b = trees
    node = a.lookup("docs").id
    rec = ["v", a.index.max_t + 1, 5, node, "ab", 1, 1, []]
    assert "not a file" in refused(b, forge(a, [(next_id(a), rec)]))


def test_refs_outside_the_declared_seen_are_refused(trees) -> None:
    a, b = trees
    c = FolderTree(C)
    up = c.mkdir("theirs", now_ms=1)
    b.receive(C, up.seq, up.seen, up.update)
    node = a.lookup("docs").id
    # A moves into C's folder while declaring it saw only its own updates: b has the folder,
    # but another replica that lacks it would refuse, so b must refuse too.
    upd = forge(a, [(next_id(a), valid_move(a, node, parent=up.update and b.lookup("theirs").id))])
    assert "declares it saw" in refused(b, upd, seen={a.replica: 2})
    assert "own 2 earlier updates" in refused(b, upd, seen={})


def test_clocks_must_continue(trees: tuple[FolderTree, FolderTree]) -> None:
    a, b = trees
    node = a.lookup("docs").id
    upd = forge(a, [(next_id(a), valid_move(a, node))], clock=a.log.next_clock(a.replica) + 3)
    assert "clock" in refused(b, upd)


def test_truncated_and_random_bytes_are_refused(trees: tuple[FolderTree, FolderTree]) -> None:
    a, b = trees
    up = a.create_file("docs/y.txt", fc(b"y"), now_ms=4)
    for cut in range(len(up.update)):
        refused(b, up.update[:cut], seq=up.seq, seen=up.seen)
    rng = random.Random(1234)
    for _ in range(300):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        refused(b, junk, seq=up.seq, seen=up.seen)
    for _ in range(300):
        flipped = bytearray(up.update)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        before = snapshot(b)
        try:
            b.receive(A, up.seq, up.seen, bytes(flipped))
        except UpdateRefused:
            assert snapshot(b) == before
            continue
        # A flip inside a name can still be a well-formed update of A's: then it is A's update.
        assert b.update_bytes(a.replica, up.seq) == bytes(flipped)
        return
    assert b.receive(A, up.seq, up.seen, up.update).status is ReceiveStatus.APPLIED


def test_a_different_update_for_a_taken_seq_is_a_fork(trees) -> None:
    a, b = trees
    up = a.mkdir("z", now_ms=3)
    b.receive(A, up.seq, up.seen, up.update)
    other = forge(a, [(next_id(a), valid_move(a, a.lookup("docs").id))])
    assert "already applied" in refused(b, other, seq=up.seq, seen=up.seen)
    assert b.receive(A, up.seq, up.seen, up.update).status is ReceiveStatus.DUPLICATE


def test_pending_until_the_causal_past_arrives(trees) -> None:
    a, _b = trees
    c = FolderTree(C)
    ups: list[LocalUpdate] = [a.mkdir("p", now_ms=3), a.mkdir("p/q", now_ms=4)]
    history = [(s, a.update_seen(a.replica, s), a.update_bytes(a.replica, s))
               for s in range(1, 5)]
    for s, seen, data in reversed(history):
        status = c.receive(A, s, seen, data).status
        assert status is (ReceiveStatus.APPLIED if s == 1 else ReceiveStatus.PENDING)
    assert not c.pending()
    assert c.listing() == a.listing()
    assert ups[-1].seq == 4


def test_update_bytes_are_reproduced_exactly(trees: tuple[FolderTree, FolderTree]) -> None:
    a, b = trees
    up = a.edit("docs/x.txt", fc(b"q"), now_ms=9)
    b.receive(A, up.seq, up.seen, up.update)
    assert b.update_bytes(a.replica, up.seq) == up.update
    assert a.update_bytes(a.replica, up.seq) == up.update
