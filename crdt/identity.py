"""Replica identity: from the signing device (and its install) to op-id prefix and Yjs client id.

Both are pure functions of ``(device_id, install_id)`` so every replica derives the same values for
a given signer. A reinstall gets a new ``install_id`` and therefore a fresh client id: reusing a Yjs
client id (or a ``(replica, counter)`` prefix) without the full state silently overwrites ops.

Client ids are 32-bit unsigned integers. Yrs accepts up to 53 bits (``Doc(client_id=2**53)``
raises), and Yjs in JavaScript draws random uint32 client ids and reads them as JS numbers; staying
in 32 bits keeps documents readable by any Yjs client. A collision between two members of a share
(probability about ``n**2 / 2**33``) is detected by the tree and the second device's updates are
refused.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass

_DOMAIN = b"driftsync/v1/crdt-replica"
REPLICA_CHARS = 10


def _digest(device_id: bytes, install_id: bytes) -> bytes:
    if not device_id or not install_id:
        raise ValueError("device_id and install_id must be non-empty bytes")
    h = hashlib.blake2b(digest_size=16, person=b"drift-replica")
    h.update(_DOMAIN)
    h.update(len(device_id).to_bytes(2, "big"))
    h.update(device_id)
    h.update(install_id)
    return h.digest()


# Both asked for with every update received (a handful of devices per share): derived once each.
@functools.lru_cache(maxsize=1024)
def replica_for(device_id: bytes, install_id: bytes) -> str:
    """The replica string used as op-id prefix: 10 lowercase base32 characters (50 bits)."""
    text = base64.b32encode(_digest(device_id, install_id)[:8]).decode("ascii").lower()
    return text[:REPLICA_CHARS]


@functools.lru_cache(maxsize=1024)
def client_id_for(device_id: bytes, install_id: bytes) -> int:
    """The Yjs client id of a replica: a uint32 taken from the same digest as the replica string."""
    return int.from_bytes(_digest(device_id, install_id)[8:12], "big")


@dataclass(frozen=True, slots=True)
class ReplicaIdentity:
    """Who writes an update: the signing device and its install."""

    device_id: bytes
    install_id: bytes

    @property
    def replica(self) -> str:
        return replica_for(self.device_id, self.install_id)

    @property
    def client_id(self) -> int:
        return client_id_for(self.device_id, self.install_id)
