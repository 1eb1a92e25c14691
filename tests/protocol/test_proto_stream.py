"""The sans-IO message stream: two machines over a fake link, handshake, failures."""

from __future__ import annotations

import pytest

from protocol.errors import (
    DecodeError,
    LocalProtocolError,
    RemoteProtocolError,
    UnsupportedVersion,
)
from protocol.frames import encode_frame
from protocol.messages import ErrorMsg, Hello, Message, Notify, decode_message
from protocol.stream import MessageStream, StreamState

SHARE = bytes(range(16))


def _pair(
    client_versions: tuple[int, int] = (1, 1), server_versions: tuple[int, int] = (1, 1)
) -> tuple[MessageStream, MessageStream]:
    client = MessageStream(
        "peer/0.1",
        answers_hello=False,
        min_version=client_versions[0],
        max_version=client_versions[1],
    )
    server = MessageStream(
        "relay/0.1",
        answers_hello=True,
        min_version=server_versions[0],
        max_version=server_versions[1],
    )
    return client, server


def _handshake(client: MessageStream, server: MessageStream) -> None:
    assert server.feed(client.hello()) == []
    assert client.feed(server.take_outgoing()) == []


def test_handshake_then_messages_flow_both_ways() -> None:
    client, server = _pair()
    _handshake(client, server)
    assert client.state is server.state is StreamState.OPEN
    assert client.version == server.version == 1
    assert (client.peer_agent, server.peer_agent) == ("relay/0.1", "peer/0.1")
    data = client.send(Notify(share=SHARE, seq=3)) + client.send(Notify(share=SHARE, seq=4))
    received: list[Message] = []
    for i in range(len(data)):  # byte by byte
        received += server.feed(data[i : i + 1])
    assert received == [Notify(share=SHARE, seq=3), Notify(share=SHARE, seq=4)]
    assert client.feed(server.send(Notify(share=SHARE, seq=5))) == [Notify(share=SHARE, seq=5)]


def test_no_common_version_fails_with_an_error_to_the_peer() -> None:
    client, server = _pair(client_versions=(2, 3), server_versions=(1, 1))
    with pytest.raises(UnsupportedVersion):
        server.feed(client.hello())
    assert server.state is StreamState.FAILED
    reply = server.take_outgoing()
    with pytest.raises(UnsupportedVersion):
        client.feed(reply)
    assert client.state is StreamState.FAILED
    assert client.take_outgoing() == b""  # an error is not answered with an error


def test_messages_before_the_handshake_are_refused() -> None:
    client, server = _pair()
    with pytest.raises(LocalProtocolError):
        client.send(Notify(share=SHARE, seq=1))
    with pytest.raises(RemoteProtocolError, match="handshake"):
        server.feed(encode_frame(Notify(share=SHARE, seq=1).encode()))
    assert server.state is StreamState.FAILED
    with pytest.raises(LocalProtocolError):
        server.feed(client.hello())


def test_garbage_fails_the_stream_and_tells_the_peer_why() -> None:
    client, server = _pair()
    _handshake(client, server)
    with pytest.raises(DecodeError):
        server.feed(encode_frame(b"\xc1"))
    error = decode_message(server.take_outgoing()[4:])
    assert isinstance(error, ErrorMsg)
    assert error.code == "malformed"
    with pytest.raises(LocalProtocolError):
        server.send(Hello(1, 1, "x"))


def test_close_inside_a_frame_is_refused() -> None:
    client, server = _pair()
    server.feed(client.hello()[:3])
    with pytest.raises(DecodeError):
        server.close()
