"""What a device's DNS-SD TXT record says: a protocol version and opaque share tokens.

``v=<version>`` and ``t0=<hex token>``, ``t1=…``: nothing else, and no name or id. The token list
is padded with random tokens to a multiple of ``TOKEN_PAD``, so the number of shares a device
holds is only known to the nearest bucket. Parsing is lenient about what it ignores (unknown keys,
malformed tokens) and never fails: anyone on the network can announce anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from peer.lan.tokens import TOKEN_BYTES

VERSION_KEY = "v"
TOKEN_KEY_PREFIX = "t"
TOKEN_PAD = 4
MAX_TOKENS = 64  # keeps the TXT record inside one mDNS packet (64 × 19 bytes)


@dataclasses.dataclass(frozen=True)
class Announcement:
    version: int | None
    tokens: frozenset[bytes]


def encode_announcement(
    version: int, tokens: Iterable[bytes], padding: Iterable[bytes]
) -> dict[str, str]:
    """TXT properties for ``tokens``, topped up from ``padding`` to a multiple of ``TOKEN_PAD``.

    ``padding`` yields random tokens (drawn from the caller's random source) as needed.
    """
    real = list(dict.fromkeys(tokens))
    if len(real) > MAX_TOKENS:
        raise ValueError(f"at most {MAX_TOKENS} shares can be announced, not {len(real)}")
    wanted = min(-(-max(len(real), 1) // TOKEN_PAD) * TOKEN_PAD, MAX_TOKENS)
    fill = iter(padding)
    all_tokens = real + [next(fill) for _ in range(wanted - len(real))]
    properties = {VERSION_KEY: str(version)}
    for index, token in enumerate(all_tokens):
        if len(token) != TOKEN_BYTES:
            raise ValueError(f"a token has {TOKEN_BYTES} bytes")
        properties[f"{TOKEN_KEY_PREFIX}{index}"] = token.hex()
    return properties


def decode_announcement(properties: Mapping[bytes, bytes | None]) -> Announcement:
    version: int | None = None
    tokens: set[bytes] = set()
    raw_version = properties.get(VERSION_KEY.encode())
    if raw_version is not None and raw_version.isdigit() and len(raw_version) <= 5:
        version = int(raw_version)
    for key, value in properties.items():
        if len(tokens) >= MAX_TOKENS:
            break
        if not key.startswith(TOKEN_KEY_PREFIX.encode()) or value is None:
            continue
        if len(value) != 2 * TOKEN_BYTES:
            continue
        try:
            tokens.add(bytes.fromhex(value.decode("ascii")))
        except (UnicodeDecodeError, ValueError):
            continue
    return Announcement(version=version, tokens=frozenset(tokens))
