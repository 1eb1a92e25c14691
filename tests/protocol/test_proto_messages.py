"""Every wire message: round trips (fixed and random), version negotiation, error mapping."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codec import (
    Bin,
    Converted,
    Flag,
    IntOrText,
    Kind,
    Maybe,
    Nested,
    OneOf,
    Pair,
    Record,
    Seq,
    Text,
    UInt,
)
from protocol.errors import (
    CounterGap,
    DecodeError,
    Fork,
    RemoteProtocolError,
    UnsupportedVersion,
)
from protocol.messages import (
    ErrorMsg,
    Hello,
    Welcome,
    decode_message,
    message_types,
    negotiate_version,
)


def test_every_message_type_round_trips(sample_messages) -> None:
    messages = sample_messages
    assert {m.TYPE for m in messages} == set(message_types())
    for message in messages:
        data = message.encode()
        decoded = decode_message(data)
        assert decoded == message, message.TYPE
        assert decoded.encode() == data
        assert type(message).decode(data) == message


def test_decoding_as_the_wrong_message_type_is_refused() -> None:
    data = Hello(min_version=1, max_version=1, agent="a").encode()
    with pytest.raises(DecodeError) as info:
        Welcome.decode(data)
    assert info.value.reason == "unknown_type"


def test_version_negotiation() -> None:
    assert negotiate_version(1, 1) == 1
    assert negotiate_version(1, 5, 1, 3) == 3
    assert negotiate_version(2, 4, 1, 9) == 4
    with pytest.raises(UnsupportedVersion) as info:
        negotiate_version(4, 6, 1, 3)
    assert info.value.code == "unsupported_version"
    with pytest.raises(UnsupportedVersion):
        negotiate_version(3, 2, 1, 3)


def test_errors_map_both_ways_through_the_wire() -> None:
    for error in (CounterGap("gap", have=4), Fork("fork"), DecodeError("too_deep", "deep")):
        back = decode_message(ErrorMsg.from_error(error).encode()).to_error()
        assert type(back) is type(error)
        assert back.code == error.code
        assert back.details == error.details
    unknown = ErrorMsg(code="from_the_future", message="?").to_error()
    assert type(unknown) is RemoteProtocolError
    assert unknown.details["wire_code"] == "from_the_future"


# --- random messages from the schemas ---------------------------------------------------------


def wire_strategy(kind: Kind) -> st.SearchStrategy[Any]:
    """Valid wire values for a schema kind (kept small so the test stays fast)."""
    if isinstance(kind, Bin):
        return st.binary(min_size=kind.min_len, max_size=min(kind.max_len, max(kind.min_len, 48)))
    if isinstance(kind, UInt):
        return st.integers(kind.min_value, kind.max_value)
    if isinstance(kind, Text):
        return st.text(min_size=kind.min_len, max_size=kind.max_len // 4).filter(
            lambda s: kind.min_len <= len(s.encode()) <= kind.max_len
        )
    if isinstance(kind, OneOf):
        return st.sampled_from(kind.values)
    if isinstance(kind, IntOrText):
        return st.integers(-(2**63), 2**64 - 1) | st.text(max_size=kind.max_len // 4)
    if isinstance(kind, Flag):
        return st.booleans()
    if isinstance(kind, Maybe):
        return st.none() | wire_strategy(kind.inner)
    if isinstance(kind, Pair):
        return st.tuples(wire_strategy(kind.first), wire_strategy(kind.second)).map(list)
    if isinstance(kind, Converted):
        return wire_strategy(kind.inner)
    if isinstance(kind, Nested):
        return record_strategy(kind.record)
    if isinstance(kind, Seq):
        items = st.lists(
            wire_strategy(kind.item),
            max_size=min(kind.max_items, 3),
            unique_by=(lambda x: bytes(x[0]) if isinstance(x, list) else repr(x))
            if kind.ordered
            else None,
        )
        return items.map(sorted) if kind.ordered else items
    raise AssertionError(f"no strategy for {kind!r}")


def record_strategy(record: type[Record]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: wire_strategy(kind) for name, kind in record.SCHEMA})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_messages_round_trip(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(sorted(message_types().values(), key=lambda c: c.TYPE)))
    wire = data.draw(record_strategy(cls))
    message = cls.from_wire(wire)
    encoded = message.encode()
    assert decode_message(encoded) == message
    assert decode_message(encoded).encode() == encoded
