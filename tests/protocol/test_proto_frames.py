"""Frames: length prefix, limits, and the incremental sans-IO decoder."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import DecodeError, EncodeError
from protocol.frames import FrameDecoder, encode_frame


def test_frame_round_trip_byte_by_byte() -> None:
    payloads = [b"a", b"hello", bytes(1000)]
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i : i + 1])
    assert out == payloads
    decoder.close()


@settings(max_examples=100, deadline=None)
@given(
    payloads=st.lists(st.binary(min_size=1, max_size=300), max_size=10),
    seed=st.integers(0, 2**32),
)
def test_any_split_of_a_stream_gives_the_same_frames(payloads: list[bytes], seed: int) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    rng = random.Random(seed)
    decoder, out, i = FrameDecoder(), [], 0
    while i < len(stream):
        step = rng.randint(1, 64)
        out += decoder.feed(stream[i : i + step])
        i += step
    assert out == payloads
    assert decoder.buffered == 0


def test_oversized_frame_is_refused_before_buffering() -> None:
    decoder = FrameDecoder(max_frame_bytes=100)
    with pytest.raises(DecodeError) as info:
        decoder.feed((101).to_bytes(4, "big"))
    assert info.value.reason == "too_large"
    assert decoder.buffered == 0
    with pytest.raises(DecodeError, match="already failed"):
        decoder.feed(b"x")
    with pytest.raises(EncodeError):
        encode_frame(bytes(101), max_frame_bytes=100)


def test_empty_frame_and_truncated_stream_are_refused() -> None:
    with pytest.raises(DecodeError):
        FrameDecoder().feed(bytes(4))
    with pytest.raises(EncodeError):
        encode_frame(b"")
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"hello")[:-1]) == []
    with pytest.raises(DecodeError) as info:
        decoder.close()
    assert info.value.reason == "truncated"
