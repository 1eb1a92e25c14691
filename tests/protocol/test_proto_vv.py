"""Version vectors: compare, merge, dominate / concurrent, compact encoding."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codec import Record
from protocol.errors import DecodeError, EncodeError
from protocol.vv import VV_KIND, Ordering, VersionVector

A, B, C = (bytes([i]) * 32 for i in (1, 2, 3))

vectors = st.dictionaries(st.sampled_from([A, B, C]), st.integers(0, 5)).map(VersionVector)


class _Holder(Record):
    SCHEMA = (("seen", VV_KIND),)

    def __init__(self, seen: VersionVector) -> None:
        self.seen = seen


def test_compare() -> None:
    assert VersionVector({A: 1}).compare(VersionVector({A: 1, B: 0})) is Ordering.EQUAL
    assert VersionVector({A: 1}).compare({A: 2}) is Ordering.BEFORE
    assert VersionVector({A: 2, B: 1}).compare({A: 2}) is Ordering.AFTER
    assert VersionVector({A: 2}).compare({B: 1}) is Ordering.CONCURRENT
    assert VersionVector({A: 2}).concurrent_with({B: 1})
    assert VersionVector({A: 2, B: 1}).dominates({A: 1})
    assert not VersionVector({A: 2}).dominates({B: 1})


def test_missing_from_lists_counter_ranges() -> None:
    mine = VersionVector({A: 3})
    assert mine.missing_from({A: 5, B: 2, C: 0}) == {A: (4, 5), B: (1, 2)}


@settings(max_examples=200, deadline=None)
@given(x=vectors, y=vectors, z=vectors)
def test_merge_is_a_join(x: VersionVector, y: VersionVector, z: VersionVector) -> None:
    assert x.merge(y) == y.merge(x)
    assert x.merge(y).merge(z) == x.merge(y.merge(z))
    assert x.merge(x) == x
    assert x.merge(y).dominates(x)
    assert x.merge(y).dominates(y)
    order = x.compare(y)
    assert (
        order
        is {
            Ordering.EQUAL: Ordering.EQUAL,
            Ordering.BEFORE: Ordering.AFTER,
            Ordering.AFTER: Ordering.BEFORE,
            Ordering.CONCURRENT: Ordering.CONCURRENT,
        }[y.compare(x)]
    )
    assert (order in (Ordering.EQUAL, Ordering.AFTER)) == x.dominates(y)


@settings(max_examples=100, deadline=None)
@given(x=vectors)
def test_compact_encoding_round_trips(x: VersionVector) -> None:
    data = _Holder(x).encode()
    assert _Holder.decode(data).seen == x
    # Compact: sorted [device, counter] pairs, zeros left out.
    assert msgpack.unpackb(data)["seen"] == [[d, c] for d, c in sorted(x.items())]


def test_vector_encoding_refuses_duplicates_unsorted_and_zero() -> None:
    for pairs in ([[A, 1], [A, 2]], [[B, 1], [A, 1]], [[A, 0]], [[A[:31], 1]]):
        with pytest.raises(DecodeError):
            _Holder.decode(msgpack.packb({"seen": pairs}, use_bin_type=True))


def test_vector_refuses_bad_keys_and_counters() -> None:
    with pytest.raises(EncodeError):
        VersionVector({b"short": 1})
    with pytest.raises(EncodeError):
        VersionVector({A: -1})
    assert VersionVector({A: 0}) == VersionVector()
    assert VersionVector({A: 1}).with_counter(B, 2) == VersionVector({A: 1, B: 2})
    assert hash(VersionVector({A: 1})) == hash(VersionVector({A: 1}))
