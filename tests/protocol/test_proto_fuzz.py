"""Fuzzing every decoder with random and mutated bytes: only the protocol's own errors come out,
quickly, in bounded memory."""

from __future__ import annotations

import contextlib
import random
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import ids
from protocol.auth import AuthChallenge, AuthResponse
from protocol.chain import ChainEntry
from protocol.codec import unpack
from protocol.envelope import Envelope, EnvelopeHeader
from protocol.errors import ProtocolError
from protocol.frames import FrameDecoder, encode_frame
from protocol.invite import Invite
from protocol.keys import DeviceCertificate, DeviceRevocation
from protocol.keyschedule import EpochKeyWrap
from protocol.linking import LinkGrant, LinkRequest, parse_link_code
from protocol.messages import Hello, decode_message
from protocol.recovery import RecoveryBlob, parse_recovery_code
from protocol.stream import MessageStream


def _frames(data: bytes) -> Any:
    decoder = FrameDecoder(max_frame_bytes=4096)
    out = decoder.feed(data)
    decoder.close()
    return out


def _stream(data: bytes) -> Any:
    stream = MessageStream("fuzz", answers_hello=True, max_frame_bytes=4096)
    out = stream.feed(encode_frame(Hello(1, 1, "peer").encode()))
    out += stream.feed(data)
    stream.close()
    return out


BYTE_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "message": decode_message,
    "stream": _stream,
    "unpack": unpack,
    "frames": _frames,
    **{
        cls.__name__: cls.decode
        for cls in (
            DeviceCertificate,
            DeviceRevocation,
            ChainEntry,
            Envelope,
            EnvelopeHeader,
            AuthChallenge,
            AuthResponse,
            EpochKeyWrap,
            LinkRequest,
            LinkGrant,
            RecoveryBlob,
            Invite,
        )
    },
}

TEXT_DECODERS: dict[str, Callable[[str], Any]] = {
    "id": ids.parse_id,
    "recovery_code": parse_recovery_code,
    "link_code": parse_link_code,
    "invite": Invite.from_text,
}


def _run(decoder: Callable[[Any], Any], data: Any) -> None:
    started = time.perf_counter()
    with contextlib.suppress(ProtocolError):
        decoder(data)
    assert time.perf_counter() - started < 2.0, "a decoder took too long"


def mutate(data: bytes, rng: random.Random, rounds: int) -> bytes:
    buf = bytearray(data)
    for _ in range(rounds):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[pos % len(buf)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[pos % len(buf)] = rng.randrange(256)
        elif op == 2:
            buf[pos:pos] = bytes([rng.randrange(256)])
        elif op == 3 and buf:
            del buf[pos % len(buf)]
        elif op == 4:
            del buf[pos:]
        else:
            buf[pos:pos] = bytes(
                rng.choice(b"\x91\xdc\xdd\xde\xdf\xc4\xc5\xc6\xd9\xda\xdb\xc0\xcf")
            )
    return bytes(buf)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(BYTE_DECODERS)), data=st.binary(max_size=512))
def test_random_bytes(name: str, data: bytes) -> None:
    _run(BYTE_DECODERS[name], data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 2**32), rounds=st.integers(1, 8))
def test_mutated_valid_bytes(
    sample_encodings: dict[str, bytes], data: st.DataObject, seed: int, rounds: int
) -> None:
    sample = sample_encodings[data.draw(st.sampled_from(sorted(sample_encodings)))]
    mutated = mutate(sample, random.Random(seed), rounds)
    for decoder in BYTE_DECODERS.values():
        _run(decoder, mutated)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(TEXT_DECODERS)), text=st.text(max_size=200))
def test_random_text(name: str, text: str) -> None:
    _run(TEXT_DECODERS[name], text)


@pytest.mark.parametrize("seed", [1, 2])
def test_memory_stays_bounded_on_hostile_input(
    sample_encodings: dict[str, bytes], seed: int, request: pytest.FixtureRequest
) -> None:
    seed = request.config.getoption("--seed") or seed
    rng = random.Random(seed)
    samples = sorted(sample_encodings.items())
    tracemalloc.start()
    try:
        worst = 0
        for _ in range(150):
            _, sample = rng.choice(samples)
            mutated = mutate(sample, rng, rng.randint(1, 6))
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            for decoder in BYTE_DECODERS.values():
                _run(decoder, mutated)
            _, peak = tracemalloc.get_traced_memory()
            worst = max(worst, (peak - base) - 64 * len(mutated))
    finally:
        tracemalloc.stop()
    assert worst < 2 * 1024 * 1024, f"seed={seed}: decoding used {worst} bytes beyond 64x input"
