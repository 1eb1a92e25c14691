"""A sans-IO message connection: bytes in, messages out; messages in, bytes out.

``MessageStream`` never sees a socket. The transport feeds it whatever arrived and writes whatever
``send`` returns. It starts with the version handshake: each side sends ``hello``; the side that
answers (the relay, or the LAN peer that accepted the connection) sends ``welcome`` with the
version both speak. Until the handshake is done only ``hello``/``welcome``/``error`` are accepted;
any protocol error moves the stream to a failed state in which it refuses everything, so a
session never half-applies a bad peer's input.
"""

from __future__ import annotations

from enum import StrEnum

from protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from protocol.frames import DEFAULT_MAX_FRAME_BYTES, FrameDecoder, encode_frame
from protocol.messages import (
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    ErrorMsg,
    Hello,
    Message,
    Welcome,
    decode_message,
    negotiate_version,
)


class StreamState(StrEnum):
    GREETING = "greeting"  # hello not yet exchanged
    OPEN = "open"
    FAILED = "failed"


class MessageStream:
    """One connection's framing, strict decoding and version handshake.

    ``answers_hello`` is True on the accepting side (it answers ``hello`` with ``welcome``).
    """

    def __init__(
        self,
        agent: str,
        *,
        answers_hello: bool,
        min_version: int = MIN_PROTOCOL_VERSION,
        max_version: int = PROTOCOL_VERSION,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.agent = agent
        self.answers_hello = answers_hello
        self.min_version = min_version
        self.max_version = max_version
        self.max_frame_bytes = max_frame_bytes
        self.state = StreamState.GREETING
        self.version: int | None = None
        self.peer_agent: str | None = None
        self._frames = FrameDecoder(max_frame_bytes)
        self._outgoing = bytearray()
        self._peer_gave_up = False

    def hello(self) -> bytes:
        """The bytes of our ``hello`` (the dialling side sends it first)."""
        return self.send(Hello(self.min_version, self.max_version, self.agent))

    def send(self, message: Message) -> bytes:
        """Frame ``message`` for the wire; only the handshake may be sent before it completes."""
        if self.state is StreamState.FAILED:
            raise LocalProtocolError("this connection has failed; open a new one")
        if self.state is StreamState.GREETING and not isinstance(
            message, Hello | Welcome | ErrorMsg
        ):
            raise LocalProtocolError(f"cannot send {message.TYPE} before the version handshake")
        return encode_frame(message.encode(), self.max_frame_bytes)

    def take_outgoing(self) -> bytes:
        """Bytes the stream itself must send (the ``welcome`` or a final ``error``)."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def feed(self, data: bytes) -> list[Message]:
        """Messages completed by ``data``, handshake handled; raises on the first bad input."""
        if self.state is StreamState.FAILED:
            raise LocalProtocolError("this connection has failed; open a new one")
        try:
            out: list[Message] = []
            for payload in self._frames.feed(data):
                message = decode_message(payload, max_bytes=self.max_frame_bytes)
                if self.state is StreamState.GREETING:
                    self._handshake(message)
                else:
                    out.append(message)
            return out
        except ProtocolError as exc:
            self._fail(exc)
            raise

    def close(self) -> None:
        """The transport ended: refuse a frame cut short."""
        self._frames.close()

    def _handshake(self, message: Message) -> None:
        if isinstance(message, ErrorMsg):
            self._peer_gave_up = True  # never answer an error with an error
            raise message.to_error()
        if self.answers_hello and isinstance(message, Hello):
            self.version = negotiate_version(
                message.min_version, message.max_version, self.min_version, self.max_version
            )
            self.peer_agent = message.agent
            self._outgoing += encode_frame(
                Welcome(version=self.version, agent=self.agent).encode(), self.max_frame_bytes
            )
        elif not self.answers_hello and isinstance(message, Welcome):
            if not self.min_version <= message.version <= self.max_version:
                raise RemoteProtocolError(f"peer chose version {message.version} we do not speak")
            self.version = message.version
            self.peer_agent = message.agent
        else:
            raise RemoteProtocolError(f"expected the version handshake, got {message.TYPE}")
        self.state = StreamState.OPEN

    def _fail(self, error: ProtocolError) -> None:
        reply = isinstance(error, RemoteProtocolError) and not self._peer_gave_up
        if self.state is not StreamState.FAILED and reply:
            # Tell the peer why, once, if the transport still carries it.
            self._outgoing += encode_frame(ErrorMsg.from_error(error).encode())
        self.state = StreamState.FAILED
