"""Printable, checksummed ids and codes (the Syncthing device-id scheme).

32 id bytes are written in RFC 4648 base32 without padding (52 characters), cut into four chunks of
13, each followed by a Luhn mod 32 check character, and shown in groups of 7 joined by dashes::

    MFZWI3D-BONSGYC-YLTMRWG-C43ENR5-QXGZDMM-FZWI3DP-ONSGYCY-LTMRWGC

Parsing ignores case, spaces and dashes, accepts the letters people confuse with digits (0 → O,
1 → I, 8 → B) and refuses any text whose check characters do not match: a single mistyped
character is always detected. The same checked-chunk scheme writes link and recovery codes.
"""

from __future__ import annotations

import base64

from protocol.errors import BadCode

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_CONFUSABLE = str.maketrans({"0": "O", "1": "I", "8": "B"})

ID_BYTES = 32
ID_CHUNK = 13
ID_GROUP = 7


def luhn32(chars: str) -> str:
    """The Luhn mod 32 check character of ``chars`` (base32 letters), as Syncthing computes it."""
    factor = 1
    total = 0
    for ch in chars:
        addend = factor * _INDEX[ch]
        factor = 1 if factor == 2 else 2
        total += addend // 32 + addend % 32
    return ALPHABET[(32 - total % 32) % 32]


def normalize(text: str) -> str:
    """Upper-case, drop separators and map confusable digits to the letters they resemble."""
    cleaned = "".join(ch for ch in text if ch not in " -\t\n").upper().translate(_CONFUSABLE)
    bad = sorted({ch for ch in cleaned if ch not in _INDEX})
    if bad:
        raise BadCode(f"characters {''.join(bad)!r} cannot appear in a driftsync id or code")
    return cleaned


def add_checks(chars: str, chunk: int) -> str:
    """``chars`` with a check character after every ``chunk`` characters (and a short tail)."""
    parts = [chars[i : i + chunk] for i in range(0, len(chars), chunk)]
    return "".join(part + luhn32(part) for part in parts)


def strip_checks(checked: str, chunk: int, kind: str) -> str:
    """Verify and remove the check characters written by ``add_checks``."""
    out = []
    for i in range(0, len(checked), chunk + 1):
        part = checked[i : i + chunk + 1]
        if len(part) < 2:
            raise BadCode(f"this {kind} is too short")
        body, check = part[:-1], part[-1]
        if luhn32(body) != check:
            position = i // (chunk + 1) + 1
            raise BadCode(f"this {kind} has a typo (the check of part {position} does not match)")
        out.append(body)
    return "".join(out)


def group(chars: str, size: int) -> str:
    return "-".join(chars[i : i + size] for i in range(0, len(chars), size))


def format_id(raw: bytes) -> str:
    """The printable form of a 32-byte device or user id."""
    if len(raw) != ID_BYTES:
        raise BadCode(f"an id is {ID_BYTES} bytes, got {len(raw)}")
    chars = base64.b32encode(raw).decode("ascii").rstrip("=")
    return group(add_checks(chars, ID_CHUNK), ID_GROUP)


def parse_id(text: str) -> bytes:
    """The 32 bytes of a printable id; ``BadCode`` if it is mistyped or of the wrong length."""
    chars = normalize(text)
    expected = 56  # 52 base32 characters + 4 check characters
    if len(chars) != expected:
        raise BadCode(f"an id has {expected} letters and digits, this one has {len(chars)}")
    body = strip_checks(chars, ID_CHUNK, "id")
    raw = base64.b32decode(body + "====")
    if base64.b32encode(raw).decode("ascii").rstrip("=") != body:
        raise BadCode("this id is not in canonical form (its last letter is impossible)")
    return raw


def short_id(raw: bytes) -> str:
    """The first group of an id, for logs and status lines (never for identification)."""
    return format_id(raw)[:ID_GROUP]


def encode_code(raw: bytes, chunk: int, group_size: int) -> str:
    """Bytes as a checked, grouped code (used for link and recovery codes)."""
    chars = base64.b32encode(raw).decode("ascii").rstrip("=")
    return group(add_checks(chars, chunk), group_size)


def decode_code(text: str, size: int, chunk: int, kind: str) -> bytes:
    """The ``size`` bytes of a code written by ``encode_code``; ``BadCode`` on any typo."""
    chars = normalize(text)
    body_len = -(-size * 8 // 5)
    expected = body_len + -(-body_len // chunk)
    if len(chars) != expected:
        raise BadCode(f"a {kind} has {expected} letters and digits, this one has {len(chars)}")
    body = strip_checks(chars, chunk, kind)
    raw = base64.b32decode(body + "=" * (-len(body) % 8))
    if len(raw) != size or base64.b32encode(raw).decode("ascii").rstrip("=") != body:
        raise BadCode(f"this {kind} is not in canonical form")
    return raw
