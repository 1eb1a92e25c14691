"""The relay client: ``RelayLink`` (the interface the engine uses) and its HTTP implementation."""

from peer.remote.backoff import Backoff
from peer.remote.http import HttpRelayLink, normalize_url
from peer.remote.link import AppendAck, LogPage, RelayLink, RemoteShare
from peer.remote.ratelimit import Bandwidth

__all__ = [
    "AppendAck",
    "Backoff",
    "Bandwidth",
    "HttpRelayLink",
    "LogPage",
    "RelayLink",
    "RemoteShare",
    "normalize_url",
]
