"""The protocol's length-prefixed frames (``protocol.frames``) over an asyncio stream.

``protocol.frames`` defines the format (4-byte big-endian length, then a non-empty payload) and a
sans-IO decoder that refuses an oversized length before buffering its body; this module adds what
a socket needs: a deadline per frame, so a peer that sends half a frame and goes quiet (a
slowloris) is cut off however slowly it trickles, and a bounded wait for the peer to read what we
write. ``read_exact_frame`` reads exactly one frame and not a byte more, for the hello that must be
judged before anything after it is buffered.
"""

from __future__ import annotations

import asyncio
import collections
import ssl

from peer.lan.errors import (
    ConnectionClosed,
    FrameTooLarge,
    MalformedFrame,
    ReadTimeout,
    WriteTimeout,
)
from protocol.errors import DecodeError, EncodeError
from protocol.frames import DEFAULT_MAX_FRAME_BYTES, HEADER_BYTES, FrameDecoder, encode_frame

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "FrameReader",
    "encode",
    "read_exact_frame",
    "write_frame",
]

READ_SIZE = 256 * 1024
_LINK_ERRORS = (ConnectionError, ssl.SSLError)


def encode(payload: bytes, max_bytes: int) -> bytes:
    """One frame; ``FrameTooLarge`` over the limit, ``ValueError`` for an empty payload."""
    if not payload:
        raise ValueError("a frame carries one message and cannot be empty")
    try:
        return encode_frame(payload, max_bytes)
    except EncodeError as exc:
        raise FrameTooLarge(max_bytes, len(payload)) from exc


async def read_exact_frame(
    reader: asyncio.StreamReader, *, max_bytes: int, timeout_s: float
) -> bytes:
    """The next frame's payload, reading nothing beyond it."""
    try:
        async with asyncio.timeout(timeout_s):
            size = int.from_bytes(await reader.readexactly(HEADER_BYTES), "big")
            if size == 0:
                raise MalformedFrame("empty frame")
            if size > max_bytes:
                raise FrameTooLarge(max_bytes, size)
            return await reader.readexactly(size)
    except TimeoutError as exc:
        raise ReadTimeout(f"no complete frame within {timeout_s} s") from exc
    except asyncio.IncompleteReadError as exc:
        raise ConnectionClosed(
            f"connection closed inside a frame ({len(exc.partial)} of {exc.expected} bytes)"
            if exc.partial
            else "connection closed"
        ) from exc
    except _LINK_ERRORS as exc:
        raise ConnectionClosed(f"connection lost: {exc}") from exc


class FrameReader:
    """Frames from a stream, through the protocol's decoder; one reader per connection."""

    def __init__(self, reader: asyncio.StreamReader, max_bytes: int) -> None:
        self._reader = reader
        self._decoder = FrameDecoder(max_bytes)
        self._ready: collections.deque[bytes] = collections.deque()

    async def next(self, timeout_s: float) -> bytes:
        """The next frame's payload; the whole frame must arrive within ``timeout_s``."""
        if self._ready:
            return self._ready.popleft()
        try:
            async with asyncio.timeout(timeout_s):
                while not self._ready:
                    data = await self._reader.read(READ_SIZE)
                    if not data:
                        pending = self._decoder.buffered
                        raise ConnectionClosed(
                            f"connection closed inside a frame ({pending} bytes pending)"
                            if pending
                            else "connection closed"
                        )
                    self._ready.extend(self._decoder.feed(data))
        except TimeoutError as exc:
            raise ReadTimeout(f"no complete frame within {timeout_s} s") from exc
        except DecodeError as exc:
            if exc.reason == "too_large":
                raise FrameTooLarge(self._decoder.max_frame_bytes) from exc
            raise MalformedFrame(exc.message) from exc
        except _LINK_ERRORS as exc:
            raise ConnectionClosed(f"connection lost: {exc}") from exc
        return self._ready.popleft()


async def write_frame(
    writer: asyncio.StreamWriter, payload: bytes, *, max_bytes: int, timeout_s: float
) -> None:
    """Send one frame; waits (up to ``timeout_s``) until the socket buffer has room again."""
    frame = encode(payload, max_bytes)
    if writer.is_closing():
        raise ConnectionClosed("connection is closed")
    writer.write(frame)  # one write per frame: concurrent senders never interleave inside one
    try:
        async with asyncio.timeout(timeout_s):
            await writer.drain()
    except TimeoutError as exc:
        raise WriteTimeout(f"peer did not read for {timeout_s} s") from exc
    except _LINK_ERRORS as exc:
        raise ConnectionClosed(f"connection lost: {exc}") from exc
