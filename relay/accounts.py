"""Users, their devices, revocations, login nonces, invites and per-user write windows (SQL).

Ids are the lower-case hex of the protocol's 32-byte ids. Every function takes an open
transaction; the service decides which.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from relay.db import Tx
from relay.errors import RateLimited

WINDOW_MS = 60_000


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    user_key: bytes
    quota_bytes: int
    used_bytes: int


async def get_user(tx: Tx, user_id: str) -> UserRow | None:
    row = await tx.fetchone(
        "SELECT user_id, user_key, quota_bytes, used_bytes FROM users WHERE user_id = ?", user_id
    )
    if row is None:
        return None
    return UserRow(str(row[0]), bytes(row[1]), int(row[2]), int(row[3]))  # type: ignore[arg-type,call-overload]


async def create_user(tx: Tx, user_id: str, user_key: bytes, quota_bytes: int, now_ms: int) -> None:
    await tx.execute(
        "INSERT INTO users (user_id, user_key, created_ms, quota_bytes) VALUES (?, ?, ?, ?)",
        user_id,
        user_key,
        now_ms,
        quota_bytes,
    )


async def device_certificate(tx: Tx, device_id: str) -> bytes | None:
    row = await tx.fetchone("SELECT certificate FROM devices WHERE device_id = ?", device_id)
    return bytes(row[0]) if row else None  # type: ignore[arg-type]


async def add_device(
    tx: Tx, device_id: str, user_id: str, device_key: bytes, certificate: bytes, now_ms: int
) -> None:
    await tx.execute(
        "INSERT INTO devices (device_id, user_id, device_key, certificate, created_ms) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id) DO NOTHING",
        device_id,
        user_id,
        device_key,
        certificate,
        now_ms,
    )


async def device_status(tx: Tx, device_id: str) -> tuple[bool, bool]:
    """(known to the relay, revoked by its user), in one statement."""
    row = await tx.fetchone(
        "SELECT EXISTS (SELECT 1 FROM devices WHERE device_id = ?), "
        "EXISTS (SELECT 1 FROM revocations WHERE device_id = ?)",
        device_id,
        device_id,
    )
    assert row is not None
    return bool(row[0]), bool(row[1])


async def is_revoked(tx: Tx, device_id: str) -> bool:
    row = await tx.fetchone("SELECT 1 FROM revocations WHERE device_id = ?", device_id)
    return row is not None


async def revoke(tx: Tx, device_id: str, user_id: str, statement: bytes, now_ms: int) -> bool:
    count = await tx.execute(
        "INSERT INTO revocations (device_id, user_id, statement, revoked_ms) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (device_id) DO NOTHING",
        device_id,
        user_id,
        statement,
        now_ms,
    )
    return count > 0


async def remember_nonce(tx: Tx, nonce: bytes, expires_ms: int) -> None:
    await tx.execute("INSERT INTO auth_nonces (nonce, expires_ms) VALUES (?, ?)", nonce, expires_ms)


async def consume_nonce(tx: Tx, nonce: bytes, now_ms: int) -> bool:
    """True exactly once per issued, unexpired nonce."""
    return (
        await tx.execute(
            "DELETE FROM auth_nonces WHERE nonce = ? AND expires_ms >= ?", nonce, now_ms
        )
        == 1
    )


def invite_hash(code: str) -> bytes:
    return hashlib.sha256(b"driftsync/v1/relay-invite\x00" + code.encode()).digest()


async def create_invite(tx: Tx, code: str, now_ms: int) -> None:
    await tx.execute(
        "INSERT INTO invites (code_hash, created_ms) VALUES (?, ?)", invite_hash(code), now_ms
    )


async def use_invite(tx: Tx, code: str, user_id: str) -> bool:
    return (
        await tx.execute(
            "UPDATE invites SET used_by = ? WHERE code_hash = ? AND used_by IS NULL",
            user_id,
            invite_hash(code),
        )
        == 1
    )


async def set_recovery(tx: Tx, user_id: str, blob: bytes) -> None:
    await tx.execute("UPDATE users SET recovery_blob = ? WHERE user_id = ?", blob, user_id)


async def set_recovery_key(tx: Tx, user_id: str, verify_key: bytes) -> bool:
    """Register the key that proves the user's recovery code (one per user; a new code replaces
    the old); False if another account registered the same key."""
    row = await tx.fetchone("SELECT user_id FROM recovery_keys WHERE verify_key = ?", verify_key)
    if row is not None:
        return str(row[0]) == user_id
    await tx.execute("DELETE FROM recovery_keys WHERE user_id = ?", user_id)
    await tx.execute(
        "INSERT INTO recovery_keys (verify_key, user_id) VALUES (?, ?)", verify_key, user_id
    )
    return True


async def recovery_by_key(tx: Tx, verify_key: bytes) -> bytes | None:
    """The recovery blob of the account whose recovery code ``verify_key`` proves."""
    row = await tx.fetchone(
        "SELECT u.recovery_blob FROM recovery_keys k JOIN users u ON u.user_id = k.user_id "
        "WHERE k.verify_key = ?",
        verify_key,
    )
    return bytes(row[0]) if row and row[0] is not None else None  # type: ignore[arg-type]


async def get_recovery(tx: Tx, user_id: str) -> bytes | None:
    row = await tx.fetchone("SELECT recovery_blob FROM users WHERE user_id = ?", user_id)
    return bytes(row[0]) if row and row[0] is not None else None  # type: ignore[arg-type]


async def charge_writes(tx: Tx, user_id: str, writes: int, limit: int, now_ms: int) -> None:
    """Count ``writes`` against the user's per-minute budget; :class:`RateLimited` past it (the
    caller's transaction then rolls the count back with everything else)."""
    window = now_ms - now_ms % WINDOW_MS
    row = await tx.fetchone(
        "INSERT INTO write_windows (user_id, window_start_ms, writes) VALUES (?, ?, ?) "
        "ON CONFLICT (user_id, window_start_ms) "
        "DO UPDATE SET writes = write_windows.writes + excluded.writes RETURNING writes",
        user_id,
        window,
        writes,
    )
    assert row is not None
    if int(row[0]) > limit:  # type: ignore[call-overload]
        raise RateLimited(
            f"write rate limit reached ({limit} per minute)",
            retry_after_s=max(1, (window + WINDOW_MS - now_ms) // 1000),
        )


async def prune(tx: Tx, now_ms: int) -> None:
    """Forget finished rate windows and expired login nonces (a periodic job)."""
    window = now_ms - now_ms % WINDOW_MS
    await tx.execute("DELETE FROM write_windows WHERE window_start_ms < ?", window)
    await tx.execute("DELETE FROM auth_nonces WHERE expires_ms < ?", now_ms)


async def revoked_among(tx: Tx, device_ids: list[str]) -> set[str]:
    marks = ",".join("?" * len(device_ids))
    rows = await tx.fetchall(
        f"SELECT device_id FROM revocations WHERE device_id IN ({marks})", *device_ids
    )
    return {str(r[0]) for r in rows}
