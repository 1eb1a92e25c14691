"""Length-prefixed frames over an asyncio stream, with a size limit and a deadline per frame.

A frame is a 4-byte big-endian length and that many bytes. The whole frame, header and body, must
arrive within the read timeout: a peer that sends half a frame and goes quiet (a slowloris) is cut
off, however slowly it trickles. A header announcing more than the limit is refused before any of
the body is read, so a peer cannot make us allocate more than the limit.
"""

from __future__ import annotations

import asyncio
import ssl
import struct

from peer.lan.errors import ConnectionClosed, FrameTooLarge, ReadTimeout, WriteTimeout

HEADER = struct.Struct(">I")
MAX_FRAME_LIMIT = (1 << 32) - 1
"""The largest size the header can express; real limits are far lower."""


async def read_frame(reader: asyncio.StreamReader, *, max_bytes: int, timeout_s: float) -> bytes:
    """The next frame's body; raises ``ConnectionClosed``, ``ReadTimeout`` or ``FrameTooLarge``."""
    try:
        async with asyncio.timeout(timeout_s):
            header = await reader.readexactly(HEADER.size)
            (size,) = HEADER.unpack(header)
            if size > max_bytes:
                raise FrameTooLarge(size, max_bytes)
            return await reader.readexactly(size)
    except TimeoutError as exc:
        raise ReadTimeout(f"no complete frame within {timeout_s} s") from exc
    except asyncio.IncompleteReadError as exc:
        raise ConnectionClosed(
            f"connection closed inside a frame ({len(exc.partial)} of {exc.expected} bytes)"
            if exc.partial
            else "connection closed"
        ) from exc
    except (ConnectionError, ssl.SSLError) as exc:
        raise ConnectionClosed(f"connection lost: {exc}") from exc


async def write_frame(
    writer: asyncio.StreamWriter, payload: bytes, *, max_bytes: int, timeout_s: float
) -> None:
    """Send one frame; waits (up to ``timeout_s``) until the socket buffer has room again."""
    if len(payload) > max_bytes:
        raise FrameTooLarge(len(payload), max_bytes)
    if writer.is_closing():
        raise ConnectionClosed("connection is closed")
    # One call with both parts: concurrent writers never interleave inside a frame.
    writer.writelines((HEADER.pack(len(payload)), payload))
    try:
        async with asyncio.timeout(timeout_s):
            await writer.drain()
    except TimeoutError as exc:
        raise WriteTimeout(f"peer did not read for {timeout_s} s") from exc
    except (ConnectionError, ssl.SSLError) as exc:
        raise ConnectionClosed(f"connection lost: {exc}") from exc
