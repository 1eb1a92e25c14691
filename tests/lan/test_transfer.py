"""Resumable chunk fetching against scripted sources: breaks, liars, peers that lack chunks."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence

import pytest

from peer.lan.errors import ConnectionClosed, LinkError
from peer.lan.transfer import (
    ChunkMismatch,
    FetchReport,
    RetryPolicy,
    TransferStalled,
    WantedChunks,
    fetch_chunks,
)
from seams import SeededRandom


def cid(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


CHUNKS = {cid(data): data for data in (bytes([i]) * (100 + i) for i in range(10))}
IDS = list(CHUNKS)


class FakeClock:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def now_ms(self) -> int:
        return 0

    def monotonic(self) -> float:
        return sum(self.slept)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


class ScriptedSource:
    """Serves ``have``; the session breaks after ``break_after`` chunks (None: never)."""

    def __init__(self, have: dict[bytes, bytes], break_after: int | None) -> None:
        self.have = have
        self.break_after = break_after
        self.requests: list[list[bytes]] = []
        self.closed = False

    async def fetch(self, chunk_ids: Sequence[bytes]) -> AsyncIterator[tuple[bytes, bytes]]:
        self.requests.append(list(chunk_ids))
        for chunk_id in chunk_ids:
            if self.break_after is not None and self.break_after <= 0:
                raise ConnectionClosed("link cut")
            if chunk_id in self.have:
                if self.break_after is not None:
                    self.break_after -= 1
                yield chunk_id, self.have[chunk_id]

    async def close(self) -> None:
        self.closed = True


class Opener:
    """Opens the scripted sessions in turn; ``None`` in the script is a failed connect."""

    def __init__(self, script: list[ScriptedSource | None]) -> None:
        self.script = script
        self.opened: list[ScriptedSource] = []

    async def __call__(self) -> ScriptedSource:
        step = self.script.pop(0)
        if step is None:
            raise LinkError("unreachable")
        self.opened.append(step)
        return step


SMALL_BATCHES = RetryPolicy(batch_size=4)


async def run(
    opener: Opener, retry: RetryPolicy = SMALL_BATCHES
) -> tuple[FetchReport, dict[bytes, bytes], FakeClock]:
    stored: dict[bytes, bytes] = {}

    async def store(chunk_id: bytes, data: bytes) -> None:
        assert chunk_id not in stored, "a chunk was stored twice"
        stored[chunk_id] = data

    wanted = WantedChunks(IDS, verify=lambda c, d: cid(d) == c)
    clock = FakeClock()
    report = await fetch_chunks(
        wanted, opener, store, clock=clock, random=SeededRandom(1), retry=retry
    )
    return report, stored, clock


async def test_broken_sessions_resume_with_only_the_missing_chunks() -> None:
    first, second = ScriptedSource(CHUNKS, break_after=3), ScriptedSource(CHUNKS, None)
    opener = Opener([first, None, None, second])
    report, stored, clock = await run(opener)
    assert stored == CHUNKS
    assert report.chunks_per_session == [3, 7]
    assert report.bytes_received == sum(map(len, CHUNKS.values()))
    assert second.requests[0] == IDS[3:7]  # batch of 4, starting after what arrived
    assert first.closed
    assert second.closed
    # A session that made progress before breaking is retried at once; failed connects back off.
    assert len(clock.slept) == 2


async def test_backoff_doubles_up_to_the_cap_and_resets_after_progress() -> None:
    retry = RetryPolicy(first_delay_s=1.0, max_delay_s=3.0, max_idle_sessions=10, batch_size=4)
    opener = Opener([None, None, None, None, ScriptedSource(CHUNKS, None)])
    _, stored, clock = await run(opener, retry)
    assert stored == CHUNKS
    bounds = [(0.5, 1.0), (1.0, 2.0), (1.5, 3.0), (1.5, 3.0)]
    assert len(clock.slept) == 4
    for slept, (low, high) in zip(clock.slept, bounds, strict=True):
        assert low <= slept <= high


async def test_a_peer_lacking_chunks_stalls_with_the_missing_list() -> None:
    half = dict(list(CHUNKS.items())[:5])
    retry = RetryPolicy(max_idle_sessions=3, batch_size=4)
    opener = Opener([ScriptedSource(half, None) for _ in range(4)])
    with pytest.raises(TransferStalled) as caught:
        await run(opener, retry)
    assert caught.value.missing == IDS[5:]


async def test_a_chunk_that_does_not_match_its_id_stops_the_fetch() -> None:
    lying = dict(CHUNKS)
    lying[IDS[2]] = b"not the chunk"
    opener = Opener([ScriptedSource(lying, None)])
    with pytest.raises(ChunkMismatch):
        await run(opener)
    assert opener.opened[0].closed


async def test_unreachable_peer_stalls_after_the_idle_limit() -> None:
    opener = Opener([None] * 3)
    with pytest.raises(TransferStalled) as caught:
        await run(opener, RetryPolicy(max_idle_sessions=3))
    assert caught.value.missing == IDS
    assert isinstance(caught.value.last_error, LinkError)


async def test_unrequested_and_duplicate_chunks_are_ignored() -> None:
    class Chatty(ScriptedSource):
        async def fetch(self, chunk_ids: Sequence[bytes]) -> AsyncIterator[tuple[bytes, bytes]]:
            yield cid(b"stranger"), b"stranger"
            async for item in super().fetch(chunk_ids):
                yield item
                yield item

    report, stored, _ = await run(Opener([Chatty(CHUNKS, None)]))
    assert stored == CHUNKS
    assert report.chunks_per_session == [10]
