"""``drift relay audit``: does the block store hold what the database says, intact?

Three passes, each streaming (nothing the size of the store is held in memory):

1. every stored block is read back and must hash to its id (a damaged disk, a bad restore);
2. every block the database records as a share's must be in the store (the database restored
   from a newer backup than the blocks: the relay would answer "have" for what it lacks);
3. every block an envelope references must be the share's or recorded as owed (an envelope whose
   file no device could ever download).

It reports and never deletes or repairs: what to do about a finding is an operator's decision
(restore the block store, or ask devices to upload again). It only reads (opening the database
applies the relay's schema migrations, as starting this relay version would).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol.envelope import Envelope
from protocol.errors import ProtocolError
from relay.db import Database, Tx
from storage.blockstore import BlockStore
from storage.errors import BlockNotFoundError, IntegrityError
from storage.hashing import BlockId

PAGE_ROWS = 500
#: Findings listed per kind; the counts are always complete.
MAX_LISTED = 1000

Progress = Callable[[str], None]


@dataclass
class Finding:
    """One kind of problem: how many, and the first ``MAX_LISTED`` of them."""

    count: int = 0
    listed: list[dict[str, Any]] = field(default_factory=list)

    def add(self, **item: Any) -> None:
        self.count += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append(item)


@dataclass
class AuditReport:
    blocks_checked: int = 0
    bytes_checked: int = 0
    share_blocks_checked: int = 0
    envelopes_checked: int = 0
    references_checked: int = 0
    owed: int = 0
    corrupt: Finding = field(default_factory=Finding)  # bytes that do not hash to their id
    missing: Finding = field(default_factory=Finding)  # recorded as a share's, not in the store
    unaccounted: Finding = field(default_factory=Finding)  # referenced, neither held nor owed
    damaged_envelopes: Finding = field(default_factory=Finding)  # stored bodies that won't decode

    @property
    def clean(self) -> bool:
        return not (
            self.corrupt.count
            or self.missing.count
            or self.unaccounted.count
            or self.damaged_envelopes.count
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "blocks_checked": self.blocks_checked,
            "bytes_checked": self.bytes_checked,
            "share_blocks_checked": self.share_blocks_checked,
            "envelopes_checked": self.envelopes_checked,
            "references_checked": self.references_checked,
            "owed": self.owed,
            **{
                name: {"count": finding.count, "listed": finding.listed}
                for name, finding in (
                    ("corrupt", self.corrupt),
                    ("missing", self.missing),
                    ("unaccounted", self.unaccounted),
                    ("damaged_envelopes", self.damaged_envelopes),
                )
            },
        }


async def audit(db: Database, store: BlockStore, progress: Progress | None = None) -> AuditReport:
    report = AuditReport()
    say = progress or (lambda _: None)
    say("checking every stored block against its id")
    await _check_store(store, report)
    say("checking that every recorded block is stored")
    await _check_recorded(db, store, report)
    say("checking that every referenced block is held or owed")
    await _check_references(db, report)
    return report


async def _check_store(store: BlockStore, report: AuditReport) -> None:
    async for block_id in store.iter_ids():
        try:
            data = await store.get(block_id)
        except IntegrityError:
            report.corrupt.add(block=block_id.hex())
            continue
        except BlockNotFoundError:
            continue  # listed, then gone: nothing of it can be wrong
        # The store verifies on read; hash again so the audit does not rest on that.
        if hashlib.sha256(data).digest() != block_id:
            report.corrupt.add(block=block_id.hex())
            continue
        report.blocks_checked += 1
        report.bytes_checked += len(data)


async def _check_recorded(db: Database, store: BlockStore, report: AuditReport) -> None:
    after: tuple[str, bytes] = ("", b"")
    while True:
        async with db.read() as tx:
            rows = await tx.fetchall(
                "SELECT share_id, block_id FROM share_blocks "
                "WHERE share_id > ? OR (share_id = ? AND block_id > ?) "
                "ORDER BY share_id, block_id LIMIT ?",
                after[0],
                after[0],
                after[1],
                PAGE_ROWS,
            )
        if not rows:
            return
        page = [(str(r[0]), bytes(r[1])) for r in rows]  # type: ignore[arg-type]
        present = await store.has_many(BlockId(b) for _, b in page)
        for share_id, block_id in page:
            report.share_blocks_checked += 1
            if block_id not in present:
                report.missing.add(share=share_id, block=block_id.hex())
        after = page[-1]


async def _check_references(db: Database, report: AuditReport) -> None:
    async with db.read() as tx:
        row = await tx.fetchone("SELECT COUNT(*) FROM owed_blocks")
    report.owed = int(row[0]) if row else 0  # type: ignore[call-overload]
    after: tuple[str, int] = ("", 0)
    while True:
        async with db.read() as tx:
            rows = await tx.fetchall(
                "SELECT share_id, seq, body FROM envelopes "
                "WHERE share_id > ? OR (share_id = ? AND seq > ?) "
                "ORDER BY share_id, seq LIMIT ?",
                after[0],
                after[0],
                after[1],
                PAGE_ROWS // 5,  # bodies can be large
            )
            if not rows:
                return
            for share_id, seq, body in rows:
                share, number = str(share_id), int(seq)  # type: ignore[call-overload]
                report.envelopes_checked += 1
                try:
                    blocks = Envelope.decode(bytes(body)).header.blocks  # type: ignore[arg-type]
                except ProtocolError as exc:
                    report.damaged_envelopes.add(share=share, seq=number, reason=str(exc))
                    continue
                report.references_checked += len(blocks)
                for block_id in await _unaccounted(tx, share, blocks):
                    report.unaccounted.add(share=share, seq=number, block=block_id.hex())
        after = (str(rows[-1][0]), int(rows[-1][1]))  # type: ignore[call-overload]


async def _unaccounted(tx: Tx, share_id: str, block_ids: Sequence[bytes]) -> list[bytes]:
    """Those of ``block_ids`` the share neither holds nor has recorded as owed."""
    if not block_ids:
        return []
    marks = ",".join("?" * len(block_ids))
    found: set[bytes] = set()
    for table in ("share_blocks", "owed_blocks"):
        rows = await tx.fetchall(
            f"SELECT block_id FROM {table} WHERE share_id = ? AND block_id IN ({marks})",
            share_id,
            *block_ids,
        )
        found.update(bytes(r[0]) for r in rows)  # type: ignore[arg-type]
    return [b for b in block_ids if b not in found]
