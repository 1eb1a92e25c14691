"""The executable flag of a file version: carried between replicas, kept by old records."""

from __future__ import annotations

import msgpack
import pytest

from crdt.ops import MalformedOp, VersionOp, decode_op, encode_op
from crdt.persist import MAGIC, _digest, load, save
from crdt.tree import FileContent, FolderTree
from tests.crdt.crdt_sim import identity

OLD_RECORD = '["v",3,9,"aaaaaaaaaa.1","ab",1,5,[]]'  # as written before the flag existed


def test_a_record_without_the_flag_decodes_as_not_executable_and_keeps_its_spelling() -> None:
    op = decode_op("aaaaaaaaaa.2", OLD_RECORD)
    assert isinstance(op, VersionOp)
    assert op.executable is False
    assert encode_op(op) == OLD_RECORD


def test_an_executable_version_round_trips() -> None:
    text = '["v",3,9,"aaaaaaaaaa.1","ab",1,5,[],1]'
    op = decode_op("aaaaaaaaaa.2", text)
    assert isinstance(op, VersionOp)
    assert op.executable is True
    assert encode_op(op) == text


@pytest.mark.parametrize("flag", ["0", "true", "2", '"x"'])
def test_any_other_flag_is_refused(flag: str) -> None:
    with pytest.raises(MalformedOp, match="executable flag"):
        decode_op("aaaaaaaaaa.2", f'["v",3,9,"aaaaaaaaaa.1","ab",1,5,[],{flag}]')


def test_the_flag_reaches_another_replica_and_a_chmod_alone_is_a_new_version() -> None:
    a, b = FolderTree(identity(0)), FolderTree(identity(1))
    updates = [
        a.create_file("run.sh", FileContent(b"\x01", 1, 5), now_ms=1),
        a.edit("run.sh", FileContent(b"\x01", 1, 5, executable=True), now_ms=2),
    ]
    for up in updates:
        b.receive(a.identity, up.seq, up.seen, up.update)
    entry = b.lookup("run.sh")
    assert entry is not None
    assert entry.version is not None
    assert entry.version.executable is True
    assert entry.version.manifest == b"\x01"


def test_save_and_load_keep_the_flag_and_read_a_save_made_before_it() -> None:
    t = FolderTree(identity(0))
    t.create_file("x", FileContent(b"\x01", 1, 5, executable=True), now_ms=1)
    t.create_file("y", FileContent(b"\x02", 1, 5), now_ms=2)
    for warm in (True, False):
        loaded = load(t.identity, save(t), use_projection=warm)
        assert loaded.lookup("x").version.executable is True  # type: ignore[union-attr]
        assert loaded.lookup("y").version.executable is False  # type: ignore[union-attr]
    # The same save without the flags' column, as an older version wrote it.
    payload = msgpack.unpackb(save(t)[len(MAGIC) + 16 :], raw=False, strict_map_key=False)
    payload["ops"]["versions"] = payload["ops"]["versions"][:8]
    body = msgpack.packb(payload, use_bin_type=True)
    old = load(t.identity, MAGIC + _digest(body) + body, use_projection=False)
    assert old.lookup("x").version.executable is False  # type: ignore[union-attr]
    assert old.lookup("y") is not None
