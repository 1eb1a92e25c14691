"""Rotating per-share discovery tokens: what a device announces instead of anything trackable.

A token is a keyed BLAKE2b of the hour number under the share's 32-byte discovery key, truncated;
the construction is the protocol's (``protocol.keyschedule.lan_token``), used here by hour.
Only devices that hold the discovery key can compute or recognise it, and tokens of different hours
are unlinkable without the key. A browser accepts the hour before and after its own, so clocks that
disagree by up to an hour still match.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

from protocol.keyschedule import HOUR_MS, LAN_TOKEN_BYTES, lan_token

DISCOVERY_KEY_BYTES = 32
TOKEN_BYTES = LAN_TOKEN_BYTES

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
    return lan_token(discovery_key, hour * HOUR_MS)


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
