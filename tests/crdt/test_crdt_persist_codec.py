"""Persistence, the Yjs codec against real pycrdt bytes, identities and op records."""

from __future__ import annotations

import pycrdt
import pytest

from crdt.errors import CorruptState, InvalidName
from crdt.identity import ReplicaIdentity, client_id_for, replica_for
from crdt.ops import MalformedOp, check_name, decode_op, encode_op
from crdt.persist import load, save
from crdt.tree import FileContent, FolderTree
from crdt.ydoc import ROOT_MAP, YDoc
from crdt.yjs_codec import (
    ClientRun,
    CodecError,
    decode_state_vector,
    decode_update,
    encode_state_vector,
    encode_update,
)
from tests.crdt.crdt_sim import identity


def small_tree() -> FolderTree:
    t = FolderTree(identity(0))
    t.mkdir("docs", now_ms=1)
    t.create_file("docs/a.txt", FileContent(b"\xaa", 1, 5), now_ms=2)
    t.create_file("docs/b.txt", FileContent(b"\xbb", 1, 5), now_ms=3)
    t.rename("docs/b.txt", "c.txt", now_ms=4)
    return t


@pytest.mark.parametrize("warm", [True, False])
def test_save_and_load_give_the_same_tree_and_continue_counters(warm: bool) -> None:
    t = small_tree()
    loaded = load(t.identity, save(t), use_projection=warm)
    assert loaded.view.entries == t.view.entries
    assert loaded.version_vector() == t.version_vector()
    up_a = t.edit("docs/a.txt", FileContent(b"\x01", 1, 6), now_ms=5)
    up_b = loaded.edit("docs/a.txt", FileContent(b"\x01", 1, 6), now_ms=5)
    assert up_a.update == up_b.update  # same counters, same clocks: nothing reused or skipped
    assert loaded.update_bytes(loaded.replica, 1) == t.update_bytes(t.replica, 1)


def test_damaged_or_foreign_saves_are_refused() -> None:
    t = small_tree()
    data = save(t)
    with pytest.raises(CorruptState):
        load(t.identity, data[:-1])
    flipped = bytearray(data)
    flipped[-5] ^= 1
    with pytest.raises(CorruptState):
        load(t.identity, bytes(flipped))
    with pytest.raises(CorruptState):
        load(identity(1), data)
    with pytest.raises(CorruptState):
        load(t.identity, b"not a save")


def test_other_rules_recompute_the_projection() -> None:
    from crdt.rules import ProjectionRules

    t = small_tree()
    rules = ProjectionRules(name_collisions=False)
    loaded = load(t.identity, save(t), rules=rules)
    assert loaded.view.entries == loaded.full_recompute().entries


def test_codec_matches_pycrdt_bytes_exactly() -> None:
    doc = YDoc(4_000_000_000)
    update = doc.insert([("k1", "v\u00e9"), ("k2", "x" * 300)])
    runs = decode_update(update, ROOT_MAP)
    assert runs == [ClientRun(4_000_000_000, 0, (("k1", "v\u00e9"), ("k2", "x" * 300)))]
    assert encode_update(runs, ROOT_MAP) == update
    second = doc.insert([("k3", "")])
    assert decode_update(second, ROOT_MAP)[0].clock == 2
    assert decode_state_vector(pycrdt.Doc().get_state()) == {}
    assert doc.state_vector() == {4_000_000_000: 3}
    assert decode_state_vector(encode_state_vector({7: 3, 1: 0})) == {7: 3}


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01", b"\x00", b"\x00\x00\x00", b"\x80\x00\x00", b"\x01\x01\x05\x00\x28"],
)
def test_codec_refuses_malformed_bytes(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_update(data, ROOT_MAP)


def test_codec_refuses_other_shapes() -> None:
    doc = pycrdt.Doc(client_id=9)
    text = doc.get("ops", type=pycrdt.Map)
    with doc.transaction():
        text["k"] = 5  # a number, not a string
    with pytest.raises(CodecError):
        decode_update(doc.get_update(), ROOT_MAP)
    arr_doc = pycrdt.Doc(client_id=9)
    arr = arr_doc.get("ops2", type=pycrdt.Array)
    arr.append("x")
    with pytest.raises(CodecError):
        decode_update(arr_doc.get_update(), ROOT_MAP)


def test_identity_is_pure_and_in_range() -> None:
    dev, inst = b"\x01" * 32, b"\x02" * 16
    assert replica_for(dev, inst) == replica_for(dev, inst)
    assert replica_for(dev, inst) != replica_for(dev, b"\x03" * 16)
    cid = client_id_for(dev, inst)
    assert 0 <= cid < 2**32
    assert pycrdt.Doc(client_id=cid).client_id == cid
    assert ReplicaIdentity(dev, inst).client_id == cid
    assert len(ReplicaIdentity(dev, inst).replica) == 10
    with pytest.raises(ValueError, match="non-empty"):
        replica_for(b"", inst)


def test_op_records_round_trip_and_names_are_checked() -> None:
    t = small_tree()
    for op in [*t.index.moves.values(), *t.index.versions.values()]:
        assert decode_op(op.id, encode_op(op)) == op
    with pytest.raises(MalformedOp):
        decode_op("bad", '["m"]')
    for bad in ["", ".", "..", "a/b", "a\x00", "\udc80", "\u00e9" * 128]:
        with pytest.raises(InvalidName):
            check_name(bad)
    assert check_name("\u00e9" * 127) == "\u00e9" * 127


def test_diff_since_and_state_vector() -> None:
    t = small_tree()
    sv = t.state_vector()
    assert sv == {t.client_id: t.log.next_clock(t.replica)}
    assert decode_update(t.diff_since(sv), ROOT_MAP) == []
    other = pycrdt.Doc()
    other.apply_update(t.diff_since({}))
    assert decode_state_vector(other.get_state()) == sv


def test_as_of_an_earlier_vector_and_time() -> None:
    t = FolderTree(identity(0))
    t.mkdir("p", now_ms=100)
    t.create_file("p/a", FileContent(b"\x01", 1, 1), now_ms=200)
    t.edit("p/a", FileContent(b"\x02", 1, 2), now_ms=300)
    t.delete("p", now_ms=400)
    assert t.listing() == {}
    old = t.as_of({t.replica: 3})
    assert old.lookup("p/a").version.manifest == b"\x02"
    at = t.as_of(t.vector_at(250))
    assert at.lookup("p/a").version.manifest == b"\x01"
    assert t.as_of(t.vector_at(50)).entries.keys() == {"root"}


def test_restore_a_folder_to_an_earlier_point() -> None:
    t = FolderTree(identity(0))
    t.mkdir("p", now_ms=100)
    t.mkdir("p/q", now_ms=110)
    t.create_file("p/a", FileContent(b"\x01", 1, 1), now_ms=200)
    t.create_file("p/q/b", FileContent(b"\x02", 1, 1), now_ms=210)
    point = t.version_vector()
    t.edit("p/a", FileContent(b"\x09", 1, 2), now_ms=300)
    t.delete("p/q", now_ms=310)
    t.create_file("p/new", FileContent(b"\x03", 1, 1), now_ms=320)
    up = t.restore_folder("p", point, now_ms=400)
    assert t.listing() == {"p": ("dir", None), "p/a": ("file", b"\x01"), "p/q": ("dir", None),
                           "p/q/b": ("file", b"\x02"), "p/new": ("file", b"\x03")}
    assert up.events
    history = t.history(t.lookup("p/a").id)
    assert [v.version.manifest for v in history.versions] == [b"\x01", b"\x09", b"\x01"]


def test_diff_between_an_earlier_tree_and_now() -> None:
    from crdt.events import Appeared, ContentChanged, Disappeared, diff_trees

    t = FolderTree(identity(0))
    t.mkdir("p", now_ms=1)
    t.create_file("p/a", FileContent(b"\x01", 1, 1), now_ms=2)
    point = t.version_vector()
    t.edit("p/a", FileContent(b"\x02", 1, 1), now_ms=3)
    t.create_file("p/b", FileContent(b"\x03", 1, 1), now_ms=4)
    t.delete("p/a", now_ms=5)
    t.create_file("p/a", FileContent(b"\x04", 1, 1), now_ms=6)
    events = diff_trees(t.as_of(point), t.view)
    assert {type(e) for e in events} <= {Appeared, ContentChanged, Disappeared}
    assert any(isinstance(e, Appeared) and e.path == "p/b" for e in events)
    # p/a is another file now (deleted and created again): it disappears and appears.
    assert any(isinstance(e, Disappeared) and e.path == "p/a" for e in events)
    assert any(isinstance(e, Appeared) and e.path == "p/a" for e in events)
    assert not any(isinstance(e, ContentChanged) for e in events)


def test_a_remote_replica_with_our_client_id_is_refused() -> None:
    from crdt.errors import UpdateRefused

    ours = FolderTree(identity(0))

    class Colliding(ReplicaIdentity):  # a 32-bit client id collision, without brute force
        @property
        def client_id(self) -> int:
            return ours.client_id

    theirs = Colliding(b"\x09" * 32, b"colliding-instal")
    other = FolderTree(theirs)
    up = other.mkdir("x", now_ms=1)
    with pytest.raises(UpdateRefused, match="already belongs to replica"):
        ours.receive(theirs, up.seq, up.seen, up.update)


def test_a_document_behind_its_update_log_is_refused_before_any_write() -> None:
    import msgpack

    from crdt.persist import MAGIC, _digest

    t = small_tree()
    older = FolderTree(t.identity)
    older.mkdir("docs", now_ms=1)  # the same first update, nothing after it
    data = save(t)
    body = msgpack.unpackb(data[len(MAGIC) + 16:], raw=False, strict_map_key=False)
    body["doc"] = older.encode_state()
    packed = msgpack.packb(body, use_bin_type=True)
    loaded = load(t.identity, MAGIC + _digest(packed) + packed)
    assert loaded.listing() == t.listing()  # reading needs only the index and projection
    for _ in range(2):
        with pytest.raises(CorruptState, match="disagree"):
            loaded.mkdir("new", now_ms=9)
    assert loaded.version_vector() == t.version_vector()
