"""Length-prefixed frames for streams, and a sans-IO incremental decoder.

A frame is a 4-byte big-endian payload length followed by the payload (one encoded message). The
decoder never sees a socket: ``feed(data)`` returns the frames completed so far. A length over the
limit (or zero) is refused as soon as its 4 bytes arrive, before anything is buffered, so a peer
cannot make us hold more than one maximal frame; after an error the decoder refuses further input.
"""

from __future__ import annotations

from protocol.codec import MAX_MESSAGE_BYTES
from protocol.errors import DecodeError, EncodeError

HEADER_BYTES = 4
DEFAULT_MAX_FRAME_BYTES = MAX_MESSAGE_BYTES


def encode_frame(payload: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    if not payload:
        raise EncodeError("a frame carries one message; it cannot be empty")
    if len(payload) > max_frame_bytes:
        raise EncodeError(
            f"frame of {len(payload)} bytes exceeds the limit of {max_frame_bytes} bytes",
            reason="too_large",
        )
    return len(payload).to_bytes(HEADER_BYTES, "big") + payload


class FrameDecoder:
    """Feed bytes as they arrive; get whole frame payloads back."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._error: DecodeError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self._error is not None:
            raise DecodeError(
                self._error.reason, "the stream already failed: " + self._error.message
            )
        self._buffer += data
        frames: list[bytes] = []
        while len(self._buffer) >= HEADER_BYTES:
            size = int.from_bytes(self._buffer[:HEADER_BYTES], "big")
            if size == 0 or size > self.max_frame_bytes:
                self._error = DecodeError(
                    "too_large" if size else "malformed",
                    f"frame length {size} is outside 1..{self.max_frame_bytes} bytes",
                )
                self._buffer.clear()
                raise self._error
            end = HEADER_BYTES + size
            if len(self._buffer) < end:
                break
            frames.append(bytes(self._buffer[HEADER_BYTES:end]))
            del self._buffer[:end]
        return frames

    def close(self) -> None:
        """The stream ended: refuse a frame cut short."""
        if self._buffer:
            raise DecodeError(
                "truncated", f"stream ended inside a frame ({len(self._buffer)} bytes pending)"
            )
