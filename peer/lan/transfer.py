"""Fetching content-addressed chunks from a peer across broken links.

Chunks are named by a hash of their content, so resuming needs no offsets: after a link breaks,
the receiver opens a new session and asks for the chunks it has not verified yet. A chunk counts
as received only once it matches its id and is stored; a chunk cut off halfway is asked for again
whole. Sessions that deliver nothing back off (jittered, doubling) and, after a few in a row, the
fetch gives up with the list of chunks still missing, so the caller can try another peer or the
relay.

The wire messages of a session belong to ``peer.lan.session``; this module only needs a
``RemoteChunks`` per session (``LanLink.fetch_chunks`` behind a freshly dialled link gives one).
``peer.lan.fetch`` is the other half: many peers at once, each on the link it already has.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from peer.lan.errors import ChunkMismatch, LanError, LinkError
from seams import Clock, RandomSource

log = logging.getLogger(__name__)


class RemoteChunks(Protocol):
    """One session with a peer that serves chunks by id."""

    def fetch(self, chunk_ids: Sequence[bytes]) -> AsyncIterator[tuple[bytes, bytes]]:
        """Yields ``(chunk_id, data)`` for the requested chunks the peer has, in any order."""
        ...

    async def close(self) -> None: ...


OpenSource = Callable[[], Awaitable[RemoteChunks]]
StoreChunk = Callable[[bytes, bytes], Awaitable[None]]
VerifyChunk = Callable[[bytes, bytes], bool]


class TransferStalled(LanError):
    """Several sessions in a row delivered nothing; ``missing`` lists the chunks not received."""

    def __init__(self, missing: Sequence[bytes], last_error: BaseException | None) -> None:
        reason = f": {last_error}" if last_error is not None else ""
        super().__init__(f"{len(missing)} chunks still missing after repeated attempts{reason}")
        self.missing = list(missing)
        self.last_error = last_error


class WantedChunks:
    """The chunks a fetch still needs, in the order they were asked for."""

    def __init__(self, chunk_ids: Iterable[bytes], verify: VerifyChunk) -> None:
        self._missing = dict.fromkeys(chunk_ids)
        self._verify = verify

    def missing(self) -> list[bytes]:
        return list(self._missing)

    @property
    def done(self) -> bool:
        return not self._missing

    def is_wanted(self, chunk_id: bytes) -> bool:
        return chunk_id in self._missing

    def check(self, chunk_id: bytes, data: bytes) -> None:
        """Raises ``ChunkMismatch`` unless ``data`` is the chunk named ``chunk_id``."""
        if not self._verify(chunk_id, data):
            raise ChunkMismatch(f"chunk {chunk_id.hex()[:16]}… does not match its id")

    def received(self, chunk_id: bytes) -> None:
        self._missing.pop(chunk_id, None)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0
    max_idle_sessions: int = 6
    batch_size: int = 64


@dataclasses.dataclass
class FetchReport:
    """What a fetch took: sessions opened and chunks each one delivered."""

    chunks_per_session: list[int] = dataclasses.field(default_factory=list)
    bytes_received: int = 0

    @property
    def sessions(self) -> int:
        return len(self.chunks_per_session)


async def fetch_chunks(
    wanted: WantedChunks,
    open_source: OpenSource,
    store: StoreChunk,
    *,
    clock: Clock,
    random: RandomSource,
    retry: RetryPolicy = RetryPolicy(),
) -> FetchReport:
    """Fetch every wanted chunk, reopening sessions as links fail; raises ``TransferStalled``."""
    report = FetchReport()
    idle_sessions = 0
    delay_s = retry.first_delay_s
    last_error: BaseException | None = None
    while not wanted.done:
        delivered = 0
        try:
            source = await open_source()
        except LinkError as exc:
            last_error = exc
            log.info("cannot open a chunk session: %s", exc)
        else:
            report.chunks_per_session.append(0)
            try:
                await _run_session(source, wanted, store, report, retry.batch_size)
            except LinkError as exc:
                last_error = exc
                log.info("chunk session broke off: %s", exc)
            finally:
                await source.close()
            # What arrived before a break counts: such a link is worth retrying at once.
            delivered = report.chunks_per_session[-1]
        if delivered:
            idle_sessions, delay_s = 0, retry.first_delay_s
            continue
        idle_sessions += 1
        if idle_sessions >= retry.max_idle_sessions:
            raise TransferStalled(wanted.missing(), last_error)
        # Jitter keeps devices that lost the same link from reconnecting in lockstep.
        await clock.sleep(delay_s * random.uniform(0.5, 1.0))
        delay_s = min(delay_s * 2, retry.max_delay_s)
    return report


async def _run_session(
    source: RemoteChunks,
    wanted: WantedChunks,
    store: StoreChunk,
    report: FetchReport,
    batch_size: int,
) -> None:
    """Ask for missing chunks batch by batch until done or a batch brings nothing new."""
    while not wanted.done:
        progress = 0
        async for chunk_id, data in source.fetch(wanted.missing()[:batch_size]):
            if not wanted.is_wanted(chunk_id):
                continue  # a duplicate, or a chunk we never asked for
            wanted.check(chunk_id, data)
            await store(chunk_id, data)
            wanted.received(chunk_id)
            progress += 1
            report.chunks_per_session[-1] += 1
            report.bytes_received += len(data)
        if not progress:
            return  # the peer lacks what is left; the caller decides what next
