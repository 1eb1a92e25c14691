"""Shares, their membership chains and the member table derived from them (SQL + a chain cache).

The chain entries are the truth; ``members`` is the head's role per user, kept beside them in the
same transaction so read ACL checks are one indexed lookup. Verified chains are cached per
process; a cached chain is brought up to the height the share row records before any decision
that depends on it, so replicas never judge by a stale chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.chain import WRITERS, ChainEntry, EntryKind, MembershipChain, Role
from protocol.keys import user_id_of
from relay.db import Tx
from relay.errors import NotFound, StaleCutoffs


async def share_row(tx: Tx, share_id: str, *, lock: bool = False) -> tuple[str, int, int]:
    """(owner user id, chain height, last seq) of a share; locked until commit if ``lock``."""
    sql = "SELECT owner_user_id, chain_height, last_seq FROM shares WHERE share_id = ?"
    row = await (tx.select_for_update(sql, share_id) if lock else tx.fetchone(sql, share_id))
    if row is None:
        raise NotFound(f"share {share_id} does not exist")
    return str(row[0]), int(row[1]), int(row[2])  # type: ignore[call-overload]


async def role_of(tx: Tx, share_id: str, user_id: str) -> Role | None:
    row = await tx.fetchone(
        "SELECT role FROM members WHERE share_id = ? AND user_id = ?", share_id, user_id
    )
    return Role(str(row[0])) if row else None


async def shares_of(tx: Tx, user_id: str) -> list[tuple[str, str, int]]:
    rows = await tx.fetchall(
        "SELECT m.share_id, m.role, s.last_seq FROM members m "
        "JOIN shares s ON s.share_id = m.share_id WHERE m.user_id = ? ORDER BY m.share_id",
        user_id,
    )
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]  # type: ignore[call-overload]


async def entries(tx: Tx, share_id: str, from_height: int) -> list[bytes]:
    rows = await tx.fetchall(
        "SELECT entry FROM chain_entries WHERE share_id = ? AND height >= ? ORDER BY height",
        share_id,
        from_height,
    )
    return [bytes(r[0]) for r in rows]  # type: ignore[arg-type]


async def create_share(
    tx: Tx, share_id: str, owner_user_id: str, genesis: ChainEntry, now_ms: int
) -> None:
    await tx.execute(
        "INSERT INTO shares (share_id, owner_user_id, created_ms, chain_height, chain_head) "
        "VALUES (?, ?, ?, 0, ?)",
        share_id,
        owner_user_id,
        now_ms,
        genesis.entry_hash,
    )
    await tx.execute(
        "INSERT INTO chain_entries (share_id, height, entry_hash, entry) VALUES (?, 0, ?, ?)",
        share_id,
        genesis.entry_hash,
        genesis.encode(),
    )


async def record_entry(tx: Tx, share_id: str, entry: ChainEntry) -> None:
    await tx.execute(
        "INSERT INTO chain_entries (share_id, height, entry_hash, entry) VALUES (?, ?, ?, ?)",
        share_id,
        entry.height,
        entry.entry_hash,
        entry.encode(),
    )
    await tx.execute(
        "UPDATE shares SET chain_height = ?, chain_head = ? WHERE share_id = ?",
        entry.height,
        entry.entry_hash,
        share_id,
    )


async def write_members(tx: Tx, share_id: str, chain: MembershipChain) -> None:
    await tx.execute("DELETE FROM members WHERE share_id = ?", share_id)
    await tx.executemany(
        "INSERT INTO members (share_id, user_id, role) VALUES (?, ?, ?)",
        [(share_id, user.hex(), role.value) for user, role in chain.members().items()],
    )


@dataclass(frozen=True, slots=True)
class EndedWriting:
    """Whose writing a chain entry ends, and the last counter of each device that stays valid."""

    user_id: str
    cutoffs: dict[str, int]  # device id → cutoff, as the entry names them
    whole_user: bool  # every device of the user stops (its devices the entry omits: cutoff 0)


def writing_ended(role_before: Role | None, entry: ChainEntry) -> EndedWriting | None:
    """What ``entry`` ends, judged with the subject's role just before it; None if nothing.

    These are the entries that carry cutoffs (see :mod:`protocol.chain`): a writer removed or
    demoted to a non-writer, and a revoked device. A viewer removed stopped writing earlier.
    """
    cutoffs = {d.hex(): c for d, c in entry.cutoffs.items()}
    kind = EntryKind(entry.kind)
    if kind is EntryKind.REVOKE_DEVICE:
        assert entry.revocation is not None
        return EndedWriting(entry.revocation.user_id.hex(), cutoffs, whole_user=False)
    if kind not in (EntryKind.REMOVE_USER, EntryKind.CHANGE_ROLE) or role_before not in WRITERS:
        return None
    if kind is EntryKind.CHANGE_ROLE and entry.role is not None and Role(entry.role) in WRITERS:
        return None
    assert entry.user_key is not None
    return EndedWriting(user_id_of(entry.user_key).hex(), cutoffs, whole_user=True)


async def check_cutoffs(tx: Tx, share_id: str, ended: EndedWriting) -> None:
    """Refuse an entry whose cutoff is below a counter the log already holds for that device.

    The owner's device reads the relay's vector before it signs; the removed device may append
    meanwhile (it is still a member). Every replica would then refuse an envelope this log keeps
    serving, while those that applied it first keep it: the trees would differ for good. Appends
    and chain extensions of a share run under its locked row, so the vector read here is the one
    the entry would land on. Devices are attributed to users by the devices they logged in with;
    a device named in the cutoffs counts unless it is known as another user's.
    """
    rows = await tx.fetchall(
        "SELECT v.device_id, v.counter, d.user_id FROM share_vectors v "
        "LEFT JOIN devices d ON d.device_id = v.device_id WHERE v.share_id = ?",
        share_id,
    )
    for row in sorted(rows, key=lambda r: str(r[0])):
        device, have = str(row[0]), int(row[1])  # type: ignore[call-overload]
        owner = None if row[2] is None else str(row[2])
        if owner is not None and owner != ended.user_id:
            continue
        if device in ended.cutoffs:
            cutoff = ended.cutoffs[device]
        elif ended.whole_user and owner == ended.user_id:
            cutoff = 0
        else:
            continue
        if have > cutoff:
            raise StaleCutoffs(
                f"the relay holds counter {have} of device {device}, past the entry's cutoff "
                f"{cutoff} for it (it wrote after the cutoffs were read); make the removal again "
                "from the relay's current log",
                device=device,
                have=have,
                cutoff=cutoff,
            )


class ChainCache:
    """Verified membership chains by share, caught up from the database on demand."""

    def __init__(self) -> None:
        self._chains: dict[str, MembershipChain] = {}

    async def at_height(self, tx: Tx, share_id: str, height: int) -> MembershipChain:
        """The share's chain verified up to at least ``height`` (read within ``tx``)."""
        chain = self._chains.get(share_id)
        if chain is not None and chain.height >= height:
            return chain
        start = 0 if chain is None else chain.height + 1
        raw = await entries(tx, share_id, start)
        if chain is None:
            if not raw:
                raise NotFound(f"share {share_id} has no chain")
            chain = MembershipChain(ChainEntry.decode(raw[0]))
            raw = raw[1:]
        for data in raw:
            chain.append(ChainEntry.decode(data))
        self._chains[share_id] = chain
        return chain

    def replace(self, share_id: str, chain: MembershipChain) -> None:
        """Install a chain extended by a committed transaction (never move backwards)."""
        current = self._chains.get(share_id)
        if current is None or current.height <= chain.height:
            self._chains[share_id] = chain
