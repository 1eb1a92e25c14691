"""The async driver of one LAN session: a connection, a session, and the engine's calls.

``LanLink.run()`` starts the session, then feeds it every message the connection delivers and
writes what it answers, until the session closes or fails or the connection ends. One writer task
sends in the order the session produced (a bandwidth wait never reorders messages); every byte
both ways goes through the device's ``LanBandwidth`` (limits and per-peer counters). Events go to
``on_event``; ``fetch_chunks`` waits for the chunks it asked for, each one received (verified by
the session) or given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from peer.lan import events as ev
from peer.lan.bandwidth import LanBandwidth
from peer.lan.errors import LanError, LinkError, MalformedFrame, SessionEnded
from peer.lan.session import LanSession, SessionState
from peer.lan.transport import LanConnection
from protocol.envelope import Envelope
from protocol.errors import ProtocolError
from protocol.messages import Heartbeat, Message, decode_message
from seams import Clock

log = logging.getLogger(__name__)

OnEvent = Callable[[ev.Event], Awaitable[None] | None]


@dataclasses.dataclass(frozen=True)
class LinkTimings:
    heartbeat_s: float = 30.0
    """Send a heartbeat after this long without sending anything."""
    idle_timeout_s: float = 95.0
    """Give up on a peer silent this long (three heartbeats and some)."""
    max_queued_bytes: int = 16 * 1024 * 1024
    """Answers waiting to be written; past this, the peer's next request waits (backpressure)."""


class LanLink:
    """One peer: runs ``session`` over ``connection``; the engine calls ``push`` / ``fetch``."""

    def __init__(
        self,
        connection: LanConnection,
        session: LanSession,
        *,
        clock: Clock,
        bandwidth: LanBandwidth | None = None,
        on_event: OnEvent | None = None,
        timings: LinkTimings = LinkTimings(),
    ) -> None:
        self.connection = connection
        self.session = session
        self._clock = clock
        self._bandwidth = bandwidth
        self._on_event = on_event
        self._timings = timings
        self._outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued_bytes = 0
        self._room = asyncio.Event()
        self._room.set()
        self._waiting: dict[bytes, asyncio.Future[bytes | None]] = {}
        self._last_sent = clock.monotonic()
        self._writer: asyncio.Task[None] | None = None
        self.done = asyncio.Event()

    @property
    def peer_device_id(self) -> bytes:
        return self.connection.peer.device_id

    @property
    def queued_bytes(self) -> int:
        """Bytes the session produced that are not yet handed to the connection."""
        return self._queued_bytes

    # --- the engine's calls --------------------------------------------------------------------

    async def push(self, share: bytes, envelopes: Sequence[Envelope]) -> int:
        """Send new local envelopes the peer lacks; 0 if the share is not open with it."""
        if self.done.is_set():
            return 0
        sent = self.session.push(share, envelopes)
        await self._after_call()
        return sent

    async def chains_changed(self) -> None:
        if not self.done.is_set():
            self.session.chains_changed()
            await self._after_call()

    async def fetch_chunks(self, share: bytes, chunk_ids: Iterable[bytes]) -> dict[bytes, bytes]:
        """The asked chunks this peer delivered (verified); the others it did not have."""
        wanted = [c for c in dict.fromkeys(chunk_ids) if c not in self._waiting]
        found: dict[bytes, bytes] = {}
        step = self.session.limits.max_outstanding_chunks
        for i in range(0, len(wanted), step):
            if self.done.is_set():
                break
            batch = wanted[i : i + step]
            loop = asyncio.get_running_loop()
            futures = {c: loop.create_future() for c in batch}
            self._waiting.update(futures)
            try:
                self.session.want_chunks(share, batch)
                await self._after_call()
                for chunk_id, future in futures.items():
                    data = await future
                    if data is not None:
                        found[chunk_id] = data
            except (SessionEnded, LanError):
                break
            finally:
                for chunk_id in batch:
                    self._waiting.pop(chunk_id, None)
        return found

    async def close(self) -> None:
        """End the session, send what it still had to say, and close the connection."""
        if not self.done.is_set():
            self.session.close()
            await self._after_call()
        await self._flush_and_close()

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Drive the session until it ends; the connection is closed on the way out."""
        self._writer = asyncio.create_task(self._write_loop())
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        try:
            self.session.start()
            await self._after_call()
            while not self.done.is_set():
                payload = await self.connection.receive(self._timings.idle_timeout_s)
                if self._bandwidth is not None:
                    await self._bandwidth.received(self.peer_device_id, len(payload))
                try:
                    message = decode_message(payload, max_bytes=len(payload))
                except ProtocolError as exc:
                    raise MalformedFrame(f"not a protocol message: {exc.message}") from exc
                if self.done.is_set():
                    break
                self.session.feed(message)
                await self._after_call()
                # A peer that asks faster than we can answer waits: memory stays bounded.
                await self._room.wait()
        except LinkError as exc:
            log.info("LAN peer %s: %s", self.peer_device_id.hex()[:16], exc)
        except LanError as exc:
            log.warning("LAN peer %s misbehaved: %s", self.peer_device_id.hex()[:16], exc)
        finally:
            if self.session.state not in (SessionState.CLOSED, SessionState.ERROR):
                self.session.close("the connection ended")
            await self._deliver(self.session.events())
            self._settle_waiters()
            self.done.set()
            heartbeat.cancel()
            await self._flush_and_close()

    async def _flush_and_close(self) -> None:
        writer = self._writer
        if writer is not None and not writer.done():
            self._outgoing.put_nowait(None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    # What the session said last (a fork, say) still goes out.
                    await asyncio.shield(writer)
            writer.cancel()
        await self.connection.close()

    async def _after_call(self) -> None:
        """Queue what the session wants to send, hand up its events, end if it ended."""
        for message in self.session.data_to_send():
            self._enqueue(message)
        await self._deliver(self.session.events())
        if self.session.state in (SessionState.CLOSED, SessionState.ERROR):
            self._settle_waiters()
            self.done.set()

    async def _deliver(self, events: list[ev.Event]) -> None:
        for event in events:
            if isinstance(event, ev.ChunkReceived):
                self._resolve(event.chunk_id, event.data)
            elif isinstance(event, ev.ChunksUnavailable):
                for chunk_id in event.chunk_ids:
                    self._resolve(chunk_id, None)
            if self._on_event is not None:
                result = self._on_event(event)
                if inspect.isawaitable(result):
                    await result

    def _resolve(self, chunk_id: bytes, data: bytes | None) -> None:
        future = self._waiting.get(chunk_id)
        if future is not None and not future.done():
            future.set_result(data)

    def _settle_waiters(self) -> None:
        for chunk_id in list(self._waiting):
            self._resolve(chunk_id, None)

    def _enqueue(self, message: Message) -> None:
        data = message.encode()
        self._queued_bytes += len(data)
        if self._queued_bytes > self._timings.max_queued_bytes:
            self._room.clear()
        self._outgoing.put_nowait(data)

    async def _write_loop(self) -> None:
        try:
            while (data := await self._outgoing.get()) is not None:
                self._queued_bytes -= len(data)
                if self._queued_bytes <= self._timings.max_queued_bytes:
                    self._room.set()
                if self._bandwidth is not None:
                    await self._bandwidth.sending(self.peer_device_id, len(data))
                try:
                    await self.connection.send(data)
                except LanError as exc:
                    log.info("LAN peer %s: %s", self.peer_device_id.hex()[:16], exc)
                    await self.connection.close()  # the reader sees it and ends the session
                    return
                self._last_sent = self._clock.monotonic()
        finally:
            self._room.set()  # a reader waiting for room must not wait for a writer that is gone

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._clock.sleep(self._timings.heartbeat_s)
            if self._clock.monotonic() - self._last_sent >= self._timings.heartbeat_s:
                self._enqueue(Heartbeat(time_ms=self._clock.now_ms()))
