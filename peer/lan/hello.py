"""The first message on a LAN connection: who I am, as the device certificate says.

Layout: ``b"DSLN"``, protocol version (1 byte), the device's Ed25519 public key (32 bytes), the
device certificate's length (2 bytes, big-endian) and the certificate. The certificate is opaque
here: the authorization hook (the engine, with the share's membership chain) judges it. The
device key must be the key of the TLS certificate that the same side used in the handshake; that
check, not any signature in this message, binds the hello to the connection.
"""

from __future__ import annotations

import dataclasses
import struct

from peer.lan.errors import BadHello

MAGIC = b"DSLN"
LAN_PROTOCOL_VERSION = 1
DEVICE_KEY_BYTES = 32
MAX_CERTIFICATE_BYTES = 4096
_FIXED = struct.Struct(">4sB32sH")
MAX_HELLO_BYTES = _FIXED.size + MAX_CERTIFICATE_BYTES


@dataclasses.dataclass(frozen=True)
class Hello:
    device_key: bytes
    certificate: bytes
    version: int = LAN_PROTOCOL_VERSION

    def encode(self) -> bytes:
        if len(self.device_key) != DEVICE_KEY_BYTES:
            raise ValueError(f"a device key has {DEVICE_KEY_BYTES} bytes")
        if len(self.certificate) > MAX_CERTIFICATE_BYTES:
            raise ValueError(f"a device certificate has at most {MAX_CERTIFICATE_BYTES} bytes")
        fixed = _FIXED.pack(MAGIC, self.version, self.device_key, len(self.certificate))
        return fixed + self.certificate

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        if len(data) < _FIXED.size:
            raise BadHello(f"hello of {len(data)} bytes is too short")
        magic, version, device_key, cert_len = _FIXED.unpack_from(data)
        if magic != MAGIC:
            raise BadHello("not a driftsync LAN hello")
        if version != LAN_PROTOCOL_VERSION:
            raise BadHello(f"LAN protocol version {version} is not supported")
        certificate = data[_FIXED.size :]
        if len(certificate) != cert_len:
            raise BadHello(
                f"hello announces a {cert_len}-byte certificate but carries {len(certificate)}"
            )
        return cls(device_key=device_key, certificate=certificate, version=version)
