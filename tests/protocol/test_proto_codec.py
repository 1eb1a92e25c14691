"""The strict decoder: every refusal carries its reason; nothing else escapes."""

from __future__ import annotations

import tracemalloc

import msgpack
import pytest

from protocol.codec import MAX_DEPTH, unpack
from protocol.errors import DecodeError, EncodeError
from protocol.keys import DeviceCertificate
from protocol.messages import Hello, decode_message


def _hello_wire() -> dict:
    return {"type": "hello", "v": 1, "min_version": 1, "max_version": 1, "agent": "x"}


def _reason(data: bytes) -> str:
    with pytest.raises(DecodeError) as info:
        decode_message(data)
    return info.value.reason


def test_valid_hello_decodes() -> None:
    assert decode_message(msgpack.packb(_hello_wire())) == Hello(1, 1, "x")


def test_truncated_and_empty_input() -> None:
    data = msgpack.packb(_hello_wire())
    for cut in range(len(data)):
        assert _reason(data[:cut]) in {"truncated", "wrong_type"}
    assert _reason(b"") == "truncated"


def test_trailing_bytes() -> None:
    assert _reason(msgpack.packb(_hello_wire()) + b"\xc0") == "trailing_bytes"


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(DecodeError) as info:
        decode_message(b"\x00" * 100, max_bytes=99)
    assert info.value.reason == "too_large"
    cert = {"v": 1, "user_key": b"k" * 32, "device_key": b"d" * 32, "name": "n" * 65}
    cert |= {"issued_ms": 1, "sig": b"s" * 64}
    with pytest.raises(DecodeError) as too_long:
        DeviceCertificate.decode(msgpack.packb(cert, use_bin_type=True))
    assert too_long.value.reason == "out_of_range"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100, 100_000])
def test_deeply_nested_msgpack(depth: int) -> None:
    assert _reason(b"\x91" * depth + b"\x01") == "too_deep"
    assert _reason(b"\x81\xa1a" * depth + b"\x01") == "too_deep"


def test_nesting_within_the_limit_decodes_as_data() -> None:
    assert unpack(b"\x91" * (MAX_DEPTH - 1) + b"\x01") is not None


def test_wrong_types_missing_unknown_fields() -> None:
    wire = _hello_wire()
    assert _reason(msgpack.packb({**wire, "agent": 5})) == "wrong_type"
    assert _reason(msgpack.packb({**wire, "min_version": True})) == "wrong_type"
    assert _reason(msgpack.packb({**wire, "min_version": 1.0})) == "wrong_type"
    assert _reason(msgpack.packb({**wire, "min_version": -1})) == "out_of_range"
    assert _reason(msgpack.packb({k: v for k, v in wire.items() if k != "agent"})) == (
        "missing_field"
    )
    assert _reason(msgpack.packb({**wire, "extra": 1})) == "unknown_field"
    assert _reason(msgpack.packb({**wire, "type": "launch_missiles"})) == "unknown_type"
    assert _reason(msgpack.packb({k: v for k, v in wire.items() if k != "type"})) == (
        "missing_field"
    )
    assert _reason(msgpack.packb([1, 2])) == "wrong_type"
    assert _reason(msgpack.packb({1: 2})) in {"malformed", "wrong_type"}


def test_bytes_and_strings_are_not_interchangeable() -> None:
    wire = _hello_wire()
    assert _reason(msgpack.packb({**wire, "agent": b"x"}, use_bin_type=True)) == "wrong_type"


def test_non_canonical_encodings_are_refused() -> None:
    wire = _hello_wire()
    reordered = {"type": "hello", "v": 1, "agent": "x", "min_version": 1, "max_version": 1}
    assert _reason(msgpack.packb(reordered)) == "not_canonical"
    # 1 written as a uint16 instead of a positive fixint.
    data = msgpack.packb(wire)
    wide = data.replace(b"\xabmin_version\x01", b"\xabmin_version\xcd\x00\x01")
    assert wide != data
    assert _reason(wide) == "not_canonical"


def test_extension_types_and_invalid_utf8_are_refused() -> None:
    wire = _hello_wire()
    ext = msgpack.packb({**wire, "agent": msgpack.ExtType(1, b"x")})
    assert _reason(ext) == "wrong_type"
    bad_utf8 = msgpack.packb(wire).replace(b"\xa1x", b"\xa1\xff")
    assert _reason(bad_utf8) == "malformed"


def test_headers_claiming_huge_sizes_use_no_memory() -> None:
    hostile = [
        b"\xdd\xff\xff\xff\xff",  # array32 of 4 billion items
        b"\xdf\xff\xff\xff\xff",  # map32 of 4 billion pairs
        b"\xc6\xff\xff\xff\xff",  # bin32 of 4 GiB
        b"\xdb\xff\xff\xff\xff",  # str32 of 4 GiB
    ]
    tracemalloc.start()
    try:
        for data in hostile:
            with pytest.raises(DecodeError):
                decode_message(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_encoding_an_invalid_record_is_a_local_error() -> None:
    with pytest.raises(EncodeError):
        Hello(min_version=0, max_version=1, agent="x").encode()
    with pytest.raises(EncodeError):
        Hello(min_version=1, max_version=1, agent="x" * 65).encode()
