"""FastCDC chunking: per-share seeds, buffer/stream agreement, edge sizes, re-synchronisation."""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.chunking import (
    DEFAULT_CHUNKING,
    Chunker,
    ChunkingParams,
    seed_for,
)
from storage.errors import ParameterError
from storage.keys import ShareKeys

SMALL = ChunkingParams(min_size=256, avg_size=1024, max_size=4096)


def noise(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def stream_points(chunker: Chunker, data: bytes) -> list[int]:
    points, end = [], 0
    for view in chunker.stream(io.BytesIO(data)):
        end += len(view)
        points.append(end)
    return points


def test_default_parameters_are_the_shares_frozen_ones() -> None:
    assert (DEFAULT_CHUNKING.min_size, DEFAULT_CHUNKING.avg_size, DEFAULT_CHUNKING.max_size) == (
        256 * 1024,
        1024 * 1024,
        4 * 1024 * 1024,
    )
    assert DEFAULT_CHUNKING.normalization == 2
    assert ChunkingParams.from_dict(DEFAULT_CHUNKING.to_dict()) == DEFAULT_CHUNKING


@pytest.mark.parametrize(
    "raw",
    [
        {"min_size": 10},
        {"max_size": 8 * 1024 * 1024},
        {"min_size": 2048, "avg_size": 1024},
        {"normalization": 4},
        {"algorithm": "rabin"},
        {"window": 3},
    ],
)
def test_bad_parameters_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ParameterError):
        ChunkingParams.from_dict(raw)


def test_empty_file_has_no_chunks_and_small_file_one(share: ShareKeys) -> None:
    chunker = Chunker(share.chunking_key)
    assert chunker.cut_points(b"") == []
    assert stream_points(chunker, b"") == []
    assert chunker.cut_points(b"x" * 1000) == [1000]
    assert chunker.cut_points(noise(1, 256 * 1024)) == [256 * 1024]


def test_chunks_respect_min_and_max(share: ShareKeys) -> None:
    data = noise(2, 24 * 1024 * 1024) + bytes(9 * 1024 * 1024)
    points = Chunker(share.chunking_key).cut_points(data)
    sizes = [b - a for a, b in zip([0, *points], points, strict=False)]
    assert all(s <= 4 * 1024 * 1024 for s in sizes)
    assert all(s >= 256 * 1024 for s in sizes[:-1])
    assert 1024 * 1024 <= sum(sizes) / len(sizes) <= 2 * 1024 * 1024


def test_stream_and_buffer_agree(share: ShareKeys) -> None:
    chunker = Chunker(share.chunking_key)
    data = noise(3, 20 * 1024 * 1024)
    assert stream_points(chunker, data) == chunker.cut_points(data)


def test_boundaries_depend_on_the_share(share: ShareKeys, other_share: ShareKeys) -> None:
    assert seed_for(share.chunking_key) != seed_for(other_share.chunking_key)
    data = noise(4, 16 * 1024 * 1024)
    mine = Chunker(share.chunking_key).cut_points(data)
    theirs = Chunker(other_share.chunking_key).cut_points(data)
    assert mine == Chunker(share.chunking_key).cut_points(data)
    assert set(mine[:-1]).isdisjoint(theirs[:-1])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(48 * 1024, 96 * 1024),
    at=st.integers(0, 8 * 1024),
    insert=st.binary(min_size=1, max_size=300),
)
def test_boundaries_resynchronise_after_an_insert(
    seed: int, size: int, at: int, insert: bytes
) -> None:
    chunker = Chunker(bytes(32), SMALL)
    data = noise(seed, size)
    before = chunker.cut_points(data)
    after = chunker.cut_points(data[:at] + insert + data[at:])
    shifted = {p + len(insert) for p in before if p > at}
    # FastCDC's normalisation looks at the distance to the end of the data, which the insert
    # changed: the last max_size bytes may cut differently.
    end = size + len(insert)
    later = [p for p in after if at < p < end - SMALL.max_size]
    # Re-synchronisation is probabilistic (in 5,000 random trials it took at most 15 chunks);
    # 40 KiB after the edit leaves room for about 40 chunks, so it must have happened, and from
    # the first shared boundary on, every boundary is an old one, shifted.
    first_shared = next(i for i, p in enumerate(later) if p in shifted)
    assert set(later[first_shared:]) <= shifted
    assert first_shared <= 30
