"""Shares, their membership chains and the member table derived from them (SQL + a chain cache).

The chain entries are the truth; ``members`` is the head's role per user, kept beside them in the
same transaction so read ACL checks are one indexed lookup. Verified chains are cached per
process; a cached chain is brought up to the height the share row records before any decision
that depends on it, so replicas never judge by a stale chain.
"""

from __future__ import annotations

from protocol.chain import ChainEntry, MembershipChain, Role
from relay.db import Tx
from relay.errors import NotFound


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
