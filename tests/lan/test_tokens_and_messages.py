"""Pure parts of the LAN layer: share tokens, TXT announcements, the hello, frames."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.lan.announcement import (
    MAX_TOKENS,
    TOKEN_PAD,
    decode_announcement,
    encode_announcement,
)
from peer.lan.discovery import LanDiscovery
from peer.lan.errors import (
    BadHello,
    ConnectionClosed,
    FrameTooLarge,
    IdentityMismatch,
    MalformedFrame,
    ReadTimeout,
)
from peer.lan.framing import FrameReader, read_exact_frame
from peer.lan.hello import claimed_identity, identity_message, read_hello_message
from peer.lan.tokens import HOUR_MS, TOKEN_BYTES, hour_of, match_shares, share_token
from protocol.keys import UserIdentity
from protocol.messages import DeviceCertificates, Hello
from seams import SeededRandom

KEY_A, KEY_B = bytes(range(32)), bytes(range(1, 33))


def test_token_is_a_keyed_blake2b_of_the_hour_and_rotates() -> None:
    hour = hour_of(1_764_000_000_000)
    assert len(share_token(KEY_A, hour)) == TOKEN_BYTES
    assert share_token(KEY_A, hour) == share_token(KEY_A, hour)
    assert share_token(KEY_A, hour) != share_token(KEY_A, hour + 1)
    assert share_token(KEY_A, hour) != share_token(KEY_B, hour)
    # Pinned value: a change here changes the wire and splits old and new devices.
    assert share_token(KEY_A, 490_000).hex() == "0ddd77b9a9fa6bcf"
    with pytest.raises(ValueError, match="32"):
        share_token(b"short", hour)


def test_tokens_match_one_hour_either_side_and_no_further() -> None:
    shares = {"a": KEY_A, "b": KEY_B}
    hour = 490_000
    for skew in (-1, 0, 1):
        assert match_shares([share_token(KEY_A, hour + skew)], shares, hour) == {"a"}
    for skew in (-2, 2, 24):
        assert match_shares([share_token(KEY_A, hour + skew)], shares, hour) == frozenset()
    both = [share_token(KEY_A, hour), share_token(KEY_B, hour - 1), os.urandom(TOKEN_BYTES)]
    assert match_shares(both, shares, hour) == {"a", "b"}
    assert match_shares([share_token(KEY_A, hour)], {"b": KEY_B}, hour) == frozenset()


def test_hour_boundaries() -> None:
    assert hour_of(HOUR_MS - 1) == 0
    assert hour_of(HOUR_MS) == 1


def test_announcement_pads_token_count_and_round_trips() -> None:
    rng = SeededRandom(3)
    tokens = [share_token(KEY_A, 5), share_token(KEY_B, 5)]
    properties = encode_announcement(1, tokens, iter(lambda: rng.bytes(TOKEN_BYTES), None))
    assert properties["v"] == "1"
    assert sorted(properties) == ["t0", "t1", "t2", "t3", "v"]
    raw = {k.encode(): v.encode() for k, v in properties.items()}
    decoded = decode_announcement(raw)
    assert decoded.version == 1
    assert set(tokens) <= decoded.tokens
    assert len(decoded.tokens) == TOKEN_PAD
    no_shares = encode_announcement(1, [], iter(lambda: rng.bytes(TOKEN_BYTES), None))
    assert len(no_shares) == 1 + TOKEN_PAD  # a device with no share looks like one with four
    with pytest.raises(ValueError, match="at most"):
        encode_announcement(1, [os.urandom(8) for _ in range(MAX_TOKENS + 1)], iter([]))


@given(st.dictionaries(st.binary(max_size=12), st.one_of(st.none(), st.binary(max_size=40))))
def test_hostile_txt_records_never_break_decoding(properties: dict[bytes, bytes | None]) -> None:
    decoded = decode_announcement(properties)
    assert all(len(t) == TOKEN_BYTES for t in decoded.tokens)
    assert len(decoded.tokens) <= MAX_TOKENS


def test_announcer_rotates_tokens_with_the_hour_and_names_nothing() -> None:
    class Clock:
        now = 490_000 * HOUR_MS + 10

        def now_ms(self) -> int:
            return self.now

        def monotonic(self) -> float:
            return 0.0

        async def sleep(self, seconds: float) -> None:
            return None

    clock = Clock()
    discovery = LanDiscovery(
        port=4000,
        discovery_keys={"photos": KEY_A},
        bind_addresses=["10.77.0.1"],
        clock=clock,
        random=SeededRandom(9),
    )
    before = decode_announcement(discovery._service_info().properties)
    # Re-announcing within the hour (a new address) shows the very same tokens, padding included.
    assert decode_announcement(discovery._service_info().properties) == before
    clock.now += HOUR_MS
    after = decode_announcement(discovery._service_info().properties)
    assert share_token(KEY_A, 490_000) in before.tokens
    assert share_token(KEY_A, 490_001) in after.tokens
    assert share_token(KEY_A, 490_000) not in after.tokens
    assert not before.tokens & after.tokens  # padding rotates with the hour too
    other = LanDiscovery(
        port=4000,
        discovery_keys={"photos": KEY_A},
        bind_addresses=["10.77.0.1"],
        clock=clock,
        random=SeededRandom(10),
    )
    assert other.instance_name != discovery.instance_name
    assert "photos" not in discovery._service_info().text.decode("latin-1")


def test_the_hello_claims_one_verified_certificate_for_the_tls_key() -> None:
    user = UserIdentity.generate()
    certificate = user.certify(KEY_A, "laptop", 1)
    message = identity_message(certificate)
    assert DeviceCertificates.decode(message.encode()) == message
    assert claimed_identity(message, KEY_A) == certificate
    with pytest.raises(IdentityMismatch):
        claimed_identity(message, bytes(32))
    with pytest.raises(BadHello, match="one certificate"):
        claimed_identity(DeviceCertificates(certificates=(certificate, certificate)), KEY_A)
    forged = dataclasses.replace(certificate, name="someone else")
    with pytest.raises(BadHello, match="does not verify"):
        claimed_identity(identity_message(forged), KEY_A)


async def test_hello_messages_are_read_one_frame_at_a_time_and_typed() -> None:
    hello = Hello(min_version=1, max_version=1, agent="a").encode()
    reader = reader_with(len(hello).to_bytes(4, "big") + hello + b"after", eof=False)
    assert await read_hello_message(reader, Hello, timeout_s=1) == Hello(1, 1, "a")
    assert reader._buffer == bytearray(b"after")  # nothing past the hello was consumed
    for garbage, expected in ((b"\x93junk", Hello), (hello, DeviceCertificates)):
        reader = reader_with(len(garbage).to_bytes(4, "big") + garbage)
        with pytest.raises(BadHello):
            await read_hello_message(reader, expected, timeout_s=1)


def reader_with(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


async def test_exact_frame_reads_stop_at_the_frame_and_enforce_limits() -> None:
    frame = (5).to_bytes(4, "big") + b"hello"
    reader = reader_with(frame + b"rest")
    assert await read_exact_frame(reader, max_bytes=5, timeout_s=1) == b"hello"
    assert await reader.read() == b"rest"  # nothing after the frame was consumed
    with pytest.raises(FrameTooLarge):
        await read_exact_frame(reader_with(frame), max_bytes=4, timeout_s=1)
    with pytest.raises(ConnectionClosed, match="3 of 5 bytes"):
        await read_exact_frame(reader_with(frame[:7]), max_bytes=5, timeout_s=1)
    with pytest.raises(ConnectionClosed):
        await read_exact_frame(reader_with(b""), max_bytes=5, timeout_s=1)
    with pytest.raises(MalformedFrame):
        await read_exact_frame(reader_with(bytes(4)), max_bytes=5, timeout_s=1)
    with pytest.raises(ReadTimeout):
        await read_exact_frame(reader_with(frame[:6], eof=False), max_bytes=5, timeout_s=0.05)


async def test_frame_reader_splits_batches_and_refuses_bad_frames() -> None:
    frames = b"".join(len(p).to_bytes(4, "big") + p for p in (b"a", b"bb", b"ccc"))
    reader = FrameReader(reader_with(frames), max_bytes=3)
    assert [await reader.next(1) for _ in range(3)] == [b"a", b"bb", b"ccc"]
    with pytest.raises(ConnectionClosed):
        await reader.next(1)
    with pytest.raises(FrameTooLarge):
        await FrameReader(reader_with(frames), max_bytes=2).next(1)
    with pytest.raises(MalformedFrame):
        await FrameReader(reader_with(bytes(4)), max_bytes=2).next(1)
    cut = FrameReader(reader_with(frames[:7]), max_bytes=3)  # "a", then half a header
    assert await cut.next(1) == b"a"
    with pytest.raises(ConnectionClosed, match="2 bytes pending"):
        await cut.next(1)
    stalled = FrameReader(reader_with(frames[:7], eof=False), max_bytes=3)
    assert await stalled.next(1) == b"a"
    with pytest.raises(ReadTimeout):
        await stalled.next(0.05)
