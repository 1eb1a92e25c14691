"""The LAN hello, in the protocol's own messages: versions first, then who I am.

The connecting side sends ``hello`` (the protocol versions it speaks and its agent) and then
``device_certificates`` holding exactly one certificate: its own. The accepting side answers with
``welcome`` (the version both will speak, ``protocol.messages.negotiate_version``) and its own
``device_certificates``. The device public key is the certificate's ``device_key``; it must equal
the key of the TLS certificate the same side used in the handshake. That comparison, not any
signature in these messages, binds the identity to the connection; the certificate's own signature
says which user vouches for the key, and the authorizer judges that user against the shares'
membership chains.

Each message is read as exactly one frame (``read_exact_frame``), so nothing a peer sends after its
hello is buffered before it is admitted.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from peer.lan.errors import BadHello, IdentityMismatch
from peer.lan.framing import read_exact_frame
from protocol.errors import ProtocolError
from protocol.keys import DeviceCertificate
from protocol.messages import DeviceCertificates, Message, decode_message

MAX_HELLO_BYTES = 4096
"""A hello message, a welcome or a one-certificate ``device_certificates`` fits easily."""

_M = TypeVar("_M", bound=Message)


async def read_hello_message(
    reader: asyncio.StreamReader, expected: type[_M], *, timeout_s: float
) -> _M:
    """The next frame as a message of type ``expected``, or ``BadHello``."""
    data = await read_exact_frame(reader, max_bytes=MAX_HELLO_BYTES, timeout_s=timeout_s)
    try:
        message = decode_message(data, max_bytes=MAX_HELLO_BYTES)
    except ProtocolError as exc:
        raise BadHello(f"not a driftsync hello: {exc.message}") from exc
    if not isinstance(message, expected):
        raise BadHello(f"expected {expected.TYPE} during the LAN hello, got {message.TYPE}")
    return message


def identity_message(certificate: DeviceCertificate) -> DeviceCertificates:
    """What a device shows after the version handshake: its own certificate, alone."""
    return DeviceCertificates(certificates=(certificate,))


def claimed_identity(message: DeviceCertificates, tls_key: bytes) -> DeviceCertificate:
    """The peer's certificate, once it names the TLS key and its user's signature holds."""
    if len(message.certificates) != 1:
        raise BadHello(f"a LAN hello carries one certificate, got {len(message.certificates)}")
    certificate = message.certificates[0]
    if certificate.device_key != tls_key:
        raise IdentityMismatch("hello names a device key other than the TLS certificate's")
    try:
        certificate.verify()
    except ProtocolError as exc:
        raise BadHello(f"device certificate does not verify: {exc.message}") from exc
    return certificate
