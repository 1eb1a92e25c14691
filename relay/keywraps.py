"""The key-wrap mailbox and the member devices of a share (SQL).

An owner's device wraps a share's epoch keys for each member device and leaves the wraps here;
each device fetches the wraps addressed to itself. The relay cannot open a wrap (it is a box
between two device keys) and the recipient checks the keys against the membership chain, so what
the relay decides here is only who may leave and who may take: owners leave, only the recipient
takes. One wrap is kept per (share, recipient, epoch); a newer one for the same epoch replaces it.

A wrap may also be addressed to a member *user* (its recipient is the user id: user and device ids
are hashes in different domains, so they never collide in ``recipient``). Only devices of that user
take it: a user who lost every device and came back with the recovery code reads their shares
through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.db import Tx

#: Wraps returned per request, newest epoch first: one suffices (it carries every earlier key);
#: a few more let a device skip one it refuses.
WRAPS_PER_ANSWER = 4


@dataclass(frozen=True, slots=True)
class StoredWrap:
    wrap: bytes
    sender_certificate: bytes


@dataclass(frozen=True, slots=True)
class MemberDevice:
    device_id: str
    certificate: bytes
    wrapped_epoch: int | None  # the newest epoch a wrap here holds for it


async def member_devices(tx: Tx, share_id: str) -> list[MemberDevice]:
    """Every unrevoked device of every member user, with the newest epoch wrapped for it."""
    rows = await tx.fetchall(
        "SELECT d.device_id, d.certificate, "
        "(SELECT MAX(w.epoch) FROM key_wraps w "
        " WHERE w.share_id = m.share_id AND w.recipient = d.device_id) "
        "FROM members m JOIN devices d ON d.user_id = m.user_id "
        "WHERE m.share_id = ? "
        "AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.device_id = d.device_id) "
        "ORDER BY d.device_id",
        share_id,
    )
    return [
        MemberDevice(str(r[0]), bytes(r[1]), None if r[2] is None else int(r[2]))  # type: ignore[arg-type,call-overload]
        for r in rows
    ]


async def member_device_ids(tx: Tx, share_id: str, device_ids: list[str]) -> set[str]:
    """Which of ``device_ids`` are unrevoked devices of members of the share."""
    marks = ",".join("?" * len(device_ids))
    rows = await tx.fetchall(
        "SELECT d.device_id FROM devices d JOIN members m ON m.user_id = d.user_id "
        f"WHERE m.share_id = ? AND d.device_id IN ({marks}) "
        "AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.device_id = d.device_id)",
        share_id,
        *device_ids,
    )
    return {str(r[0]) for r in rows}


async def member_user_ids(tx: Tx, share_id: str, user_ids: list[str]) -> set[str]:
    """Which of ``user_ids`` are members of the share now."""
    marks = ",".join("?" * len(user_ids))
    rows = await tx.fetchall(
        f"SELECT user_id FROM members WHERE share_id = ? AND user_id IN ({marks})",
        share_id,
        *user_ids,
    )
    return {str(r[0]) for r in rows}


async def store(
    tx: Tx, share_id: str, sender: str, wraps: list[tuple[str, int, bytes]], now_ms: int
) -> None:
    """Keep (recipient, epoch, wrap bytes) from ``sender``, replacing one for the same epoch."""
    for recipient, epoch, wrap in wraps:
        await tx.execute(
            "INSERT INTO key_wraps (share_id, recipient, epoch, sender, wrap, stored_ms) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (share_id, recipient, epoch) DO UPDATE SET "
            "sender = excluded.sender, wrap = excluded.wrap, stored_ms = excluded.stored_ms",
            share_id,
            recipient,
            epoch,
            sender,
            wrap,
            now_ms,
        )


async def addressed_to(tx: Tx, share_id: str, recipient: str) -> list[StoredWrap]:
    """The newest wraps for ``recipient``, each with its sender's certificate."""
    rows = await tx.fetchall(
        "SELECT w.wrap, d.certificate FROM key_wraps w JOIN devices d ON d.device_id = w.sender "
        "WHERE w.share_id = ? AND w.recipient = ? ORDER BY w.epoch DESC LIMIT ?",
        share_id,
        recipient,
        WRAPS_PER_ANSWER,
    )
    return [StoredWrap(bytes(r[0]), bytes(r[1])) for r in rows]  # type: ignore[arg-type]
