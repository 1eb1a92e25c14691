"""One error hierarchy for the LAN layer: discovery, TLS transport and transfers.

``LanError`` is the base; a caller that only wants "this peer or link failed, try another" catches
it. Errors caused by the other side (bad frames, wrong identity, refusal) derive from
``PeerMisbehaved`` so that a caller can stop trusting that address; link trouble (timeouts, closed
connections) is ``LinkError`` and is worth a retry.
"""

from __future__ import annotations


class LanError(Exception):
    """Base of every error raised by ``peer.lan``."""


class LinkError(LanError):
    """The connection failed, closed or stalled; retrying later may succeed."""


class ConnectionClosed(LinkError):
    """The other side closed the connection (cleanly or not) before a whole frame arrived."""


class ReadTimeout(LinkError):
    """A frame did not arrive in full within the read timeout (a stall or a slowloris)."""


class WriteTimeout(LinkError):
    """The other side stopped reading: a frame could not be handed to the socket in time."""


class PeerMisbehaved(LanError):
    """The other side sent something the LAN protocol does not allow."""


class FrameTooLarge(PeerMisbehaved):
    """A frame is larger than the connection's maximum frame size.

    Raised for a received header (the body is never read) and for a payload we were asked to send.
    """

    def __init__(self, limit: int, size: int | None = None) -> None:
        what = f"frame of {size} bytes" if size is not None else "frame"
        super().__init__(f"{what} exceeds the limit of {limit} bytes")
        self.limit = limit
        self.size = size


class MalformedFrame(PeerMisbehaved):
    """A frame the protocol does not allow (an empty one)."""


class BadHello(PeerMisbehaved):
    """The first message after TLS is not a well-formed hello."""


class IdentityMismatch(PeerMisbehaved):
    """The hello names a device key other than the one that signed the TLS handshake."""


class IncompatiblePeer(LanError):
    """The two sides speak no common protocol version; the older one must be updated."""


class SessionViolation(PeerMisbehaved):
    """The peer sent a message the LAN session does not allow in its state, or a bad one."""


class ChunkMismatch(PeerMisbehaved):
    """A peer sent bytes that do not hash to the chunk id it named."""


class SessionEnded(LanError):
    """The session is closed or failed; it takes no more input (open a new connection)."""


class NotAdmitted(LanError):
    """We were asked to send something for a share the peer is not (or no longer) admitted to."""


class Unauthorized(LanError):
    """The peer proved its key, but the authorization hook does not admit it (or it refused us)."""


class DiscoveryError(LanError):
    """mDNS could not be started on the requested addresses."""
