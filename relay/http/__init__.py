"""The aiohttp adapter: a thin translation between HTTP/WebSocket and :class:`RelayService`."""

from relay.http.app import create_app
from relay.http.context import SERVICE

__all__ = ["SERVICE", "create_app"]
