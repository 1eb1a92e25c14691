"""Rotating per-share discovery tokens: what a device announces instead of anything trackable.

A token is a keyed BLAKE2b of the hour number under the share's 32-byte discovery key, truncated.
Only devices that hold the discovery key can compute or recognise it, and tokens of different hours
are unlinkable without the key. A browser accepts the hour before and after its own, so clocks that
disagree by up to an hour still match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

DISCOVERY_KEY_BYTES = 32
TOKEN_BYTES = 8
HOUR_MS = 3_600_000
# BLAKE2b's personalization separates these tokens from every other keyed hash of the same key.
_PERSON = b"driftsync-lan-v1"

S = TypeVar("S", bound=Hashable)


def hour_of(now_ms: int) -> int:
    """The hour number (hours since the Unix epoch) that tokens are computed for."""
    return now_ms // HOUR_MS


def share_token(discovery_key: bytes, hour: int) -> bytes:
    """The token that announces a share during ``hour``."""
    if len(discovery_key) != DISCOVERY_KEY_BYTES:
        raise ValueError(f"a discovery key has {DISCOVERY_KEY_BYTES} bytes")
    if hour < 0:
        raise ValueError("hour must not be negative")
    return hashlib.blake2b(
        hour.to_bytes(8, "big"), digest_size=TOKEN_BYTES, key=discovery_key, person=_PERSON
    ).digest()


def accepted_tokens(discovery_keys: Mapping[S, bytes], hour: int) -> dict[bytes, S]:
    """Every token a browser accepts during ``hour``, mapped to the share it stands for."""
    accepted: dict[bytes, S] = {}
    for share, key in discovery_keys.items():
        for h in (hour - 1, hour, hour + 1):
            if h >= 0:
                accepted[share_token(key, h)] = share
    return accepted


def match_shares(
    tokens: Iterable[bytes], discovery_keys: Mapping[S, bytes], hour: int
) -> frozenset[S]:
    """The shares among ``discovery_keys`` that an announcement's ``tokens`` stand for."""
    accepted = accepted_tokens(discovery_keys, hour)
    return frozenset(accepted[t] for t in tokens if t in accepted)
