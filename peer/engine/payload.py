"""What an envelope's encrypted payload holds: one CRDT update and who wrote it.

The envelope header names the device; the CRDT names replicas by (device, install), and a device
restored from a backup writes as a new install. So the payload carries the install id, the
update's number for that replica, the replica-level seen vector, the update bytes and the
signer's device certificate (the relay offers no endpoint that serves certificates; the receiver
checks it against the user key in the membership chain before trusting the signature).
"""

from __future__ import annotations

from dataclasses import dataclass

from peer.errors import IntegrityError
from protocol.codec import pack, unpack
from protocol.errors import ProtocolError

PAYLOAD_VERSION = 1
MAX_PAYLOAD_BYTES = 8 << 20


@dataclass(frozen=True, slots=True)
class UpdatePayload:
    install: bytes
    seq: int
    seen: dict[str, int]
    update: bytes
    certificate: bytes

    def encode(self) -> bytes:
        return pack(
            {
                "v": PAYLOAD_VERSION,
                "install": self.install,
                "seq": self.seq,
                "seen": dict(sorted(self.seen.items())),
                "update": self.update,
                "cert": self.certificate,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> UpdatePayload:
        try:
            raw = unpack(data, max_bytes=MAX_PAYLOAD_BYTES)
        except ProtocolError as exc:
            raise IntegrityError(f"an envelope's payload is not readable: {exc}") from exc
        ok = (
            isinstance(raw, dict)
            and raw.get("v") == PAYLOAD_VERSION
            and isinstance(raw.get("install"), bytes)
            and isinstance(raw.get("seq"), int)
            and isinstance(raw.get("seen"), dict)
            and all(isinstance(k, str) and isinstance(v, int) for k, v in raw["seen"].items())
            and isinstance(raw.get("update"), bytes)
            and isinstance(raw.get("cert"), bytes)
        )
        if not ok:
            raise IntegrityError("an envelope's payload has the wrong shape")
        return cls(raw["install"], raw["seq"], dict(raw["seen"]), raw["update"], raw["cert"])
