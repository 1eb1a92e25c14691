"""The per-share update log: sequence allocation, idempotent appends, fork and gap detection,
catch-up by cursor or by version vector, and the blocks envelopes reference but the relay lacks.

Every function takes an open transaction. :func:`append` must run in a write transaction: it
locks the share's head row first, so appends to one share allocate and commit sequence numbers
strictly in order (a reader paging ``seq > cursor`` can never see ``n + 1`` before ``n``), and the
``UNIQUE(share, device, counter)`` constraint backs the fork check.

The log stores envelope bodies opaquely: the service verifies them (with ``protocol``) and
passes the header fields the log needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from relay.db import Tx
from relay.errors import BrokenHashChain, CounterGap, Fork, NotFound


@dataclass(frozen=True, slots=True)
class NewEnvelope:
    """What the log needs of a verified envelope. ``prev_hash`` is None for a device's first."""

    device_id: str
    counter: int
    envelope_hash: bytes
    prev_hash: bytes | None
    body: bytes
    block_ids: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int
    device_id: str
    counter: int
    envelope_hash: bytes
    body: bytes
    appended_ms: int  # the relay's clock when it appended; never decreases along a share's log


@dataclass(frozen=True, slots=True)
class Head:
    """A share's row, locked for an append, with the caller's role and the last entry's stamp."""

    owner_user_id: str
    chain_height: int
    last_seq: int
    last_ms: int
    role: str | None  # the caller's, None for a non-member


async def locked_head(tx: Tx, share_id: str, user_id: str) -> Head:
    """Lock the share's row and read what an append needs of it in one statement (the round
    trips, not the rows, are what an append pays for)."""
    row = await tx.select_for_update(
        "SELECT s.owner_user_id, s.chain_height, s.last_seq, "
        "(SELECT e.received_ms FROM envelopes e WHERE e.share_id = s.share_id "
        "AND e.seq = s.last_seq), "
        "(SELECT m.role FROM members m WHERE m.share_id = s.share_id AND m.user_id = ?) "
        "FROM shares s WHERE s.share_id = ?",
        user_id,
        share_id,
    )
    if row is None:
        raise NotFound(f"share {share_id} does not exist")
    return Head(
        str(row[0]),
        int(row[1]),  # type: ignore[call-overload]
        int(row[2]),  # type: ignore[call-overload]
        int(row[3] or 0),  # type: ignore[call-overload]
        None if row[4] is None else str(row[4]),
    )


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Sequence number per submitted envelope (original ones for resends) and the new head."""

    seqs: tuple[int, ...]
    appended: int
    last_seq: int
    owed_added: int
    stamp_ms: int | None = None  # the append time of the new entries (None: only resends)


async def append(
    tx: Tx,
    share_id: str,
    items: Sequence[NewEnvelope],
    now_ms: int,
    *,
    tips: dict[str, tuple[int, bytes]] | None = None,
    locked_last_seq: int | None = None,
    locked_last_ms: int | None = None,
) -> AppendResult:
    """Append envelopes of one share, in order, all or nothing.

    A resend identical to a stored envelope gets its original sequence; a different envelope for a
    taken counter raises :class:`Fork` (with the stored one); a counter that does not follow the
    device's last raises :class:`CounterGap`; a previous-hash that does not name the device's
    last envelope raises :class:`BrokenHashChain`. Errors carry ``index``, the failing item.

    A caller that already locked the share row in this transaction passes ``locked_last_seq``
    and ``locked_last_ms`` (from :func:`locked_head`; and may pass ``tips`` from :func:`tips`),
    saving the round trips.

    Each new entry is stamped ``now_ms``, raised to the share's last stamp if that is later
    (relays' clocks differ a little, and ``now_ms`` may be read before the lock): "as of" a
    time then always means a prefix of the log, which is what devices restore from.
    """
    if locked_last_seq is None:
        head = await tx.select_for_update(
            "SELECT last_seq FROM shares WHERE share_id = ?", share_id
        )
        if head is None:
            raise NotFound(f"share {share_id} does not exist")
        last_seq = int(head[0])  # type: ignore[call-overload]
    else:
        last_seq = locked_last_seq
    vectors: dict[str, tuple[int, bytes | None]] = dict(tips) if tips is not None else {}
    have_all_tips = tips is not None
    seqs: list[int] = []
    appended = owed_added = 0
    stamp: int | None = None
    for index, item in enumerate(items):
        known = vectors.get(item.device_id)
        if known is None and have_all_tips:
            known = (0, None)
        stored = None
        # A device's counters are stored contiguously (the vector is its highest), so only a
        # counter at or below the known one can be a resend or a fork.
        if known is None or item.counter <= known[0]:
            stored = await tx.fetchone(
                "SELECT seq, envelope_hash, body FROM envelopes "
                "WHERE share_id = ? AND device_id = ? AND counter = ?",
                share_id,
                item.device_id,
                item.counter,
            )
        if stored is not None:
            if bytes(stored[1]) == item.envelope_hash:  # type: ignore[arg-type]
                seqs.append(int(stored[0]))  # type: ignore[call-overload]
                continue
            raise Fork(
                f"device {item.device_id} already has a different envelope at counter "
                f"{item.counter}",
                index=index,
                seq=int(stored[0]),
                stored=bytes(stored[2]),  # type: ignore[arg-type,call-overload]
            )
        if item.device_id not in vectors and not have_all_tips:
            row = await tx.fetchone(
                "SELECT counter, last_hash FROM share_vectors WHERE share_id = ? AND device_id = ?",
                share_id,
                item.device_id,
            )
            vectors[item.device_id] = (
                (int(row[0]), bytes(row[1])) if row else (0, None)  # type: ignore[arg-type,call-overload]
            )
        have, last_hash = vectors.get(item.device_id, (0, None))
        if item.counter != have + 1:
            raise CounterGap(
                f"device {item.device_id} is at counter {have}; {item.counter} does not follow",
                index=index,
                have=have,
            )
        if item.prev_hash != last_hash:
            raise BrokenHashChain(
                f"envelope {item.counter} of device {item.device_id} does not name the device's "
                "previous envelope",
                index=index,
            )
        if stamp is None:
            if locked_last_ms is None:
                locked_last_ms = await _last_stamp(tx, share_id, last_seq)
            stamp = max(now_ms, locked_last_ms)
        last_seq += 1
        await tx.execute(
            "INSERT INTO envelopes (share_id, seq, device_id, counter, envelope_hash, body, "
            "received_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            share_id,
            last_seq,
            item.device_id,
            item.counter,
            item.envelope_hash,
            item.body,
            stamp,
        )
        await tx.execute(
            "INSERT INTO share_vectors (share_id, device_id, counter, last_hash) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (share_id, device_id) "
            "DO UPDATE SET counter = excluded.counter, last_hash = excluded.last_hash",
            share_id,
            item.device_id,
            item.counter,
            item.envelope_hash,
        )
        vectors[item.device_id] = (item.counter, item.envelope_hash)
        for block_id in dict.fromkeys(item.block_ids):
            present = await tx.fetchone(
                "SELECT 1 FROM share_blocks WHERE share_id = ? AND block_id = ?",
                share_id,
                block_id,
            )
            if present is None:
                owed_added += await tx.execute(
                    "INSERT INTO owed_blocks (share_id, block_id, first_seq) VALUES (?, ?, ?) "
                    "ON CONFLICT (share_id, block_id) DO NOTHING",
                    share_id,
                    block_id,
                    last_seq,
                )
        seqs.append(last_seq)
        appended += 1
    if appended:
        await tx.execute("UPDATE shares SET last_seq = ? WHERE share_id = ?", last_seq, share_id)
    return AppendResult(tuple(seqs), appended, last_seq, owed_added, stamp)


async def _last_stamp(tx: Tx, share_id: str, seq: int) -> int:
    if seq == 0:
        return 0
    row = await tx.fetchone(
        "SELECT received_ms FROM envelopes WHERE share_id = ? AND seq = ?", share_id, seq
    )
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def _entry(row: tuple[object, ...]) -> LogEntry:
    return LogEntry(
        seq=int(row[0]),  # type: ignore[call-overload]
        device_id=str(row[1]),
        counter=int(row[2]),  # type: ignore[call-overload]
        envelope_hash=bytes(row[3]),  # type: ignore[arg-type]
        body=bytes(row[4]),  # type: ignore[arg-type]
        appended_ms=int(row[5]),  # type: ignore[call-overload]
    )


_COLUMNS = "seq, device_id, counter, envelope_hash, body, received_ms"


async def last_seq(tx: Tx, share_id: str) -> int:
    row = await tx.fetchone("SELECT last_seq FROM shares WHERE share_id = ?", share_id)
    if row is None:
        raise NotFound(f"share {share_id} does not exist")
    return int(row[0])  # type: ignore[call-overload]


#: A page stops after the entry that crosses this many bytes of envelopes (at least one entry).
PAGE_BYTES = 4 << 20
_CHUNK_ROWS = 64


async def since(tx: Tx, share_id: str, cursor: int, limit: int) -> list[LogEntry]:
    """Entries with ``seq > cursor`` in sequence order: at most ``limit``, about ``PAGE_BYTES``."""
    out: list[LogEntry] = []
    size = 0
    while len(out) < limit and size < PAGE_BYTES:
        rows = await tx.fetchall(
            f"SELECT {_COLUMNS} FROM envelopes WHERE share_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            share_id,
            cursor,
            min(_CHUNK_ROWS, limit - len(out)),
        )
        for row in rows:
            entry = _entry(row)
            out.append(entry)
            size += len(entry.body)
            if size >= PAGE_BYTES:
                break
        if len(rows) < _CHUNK_ROWS:
            break
        cursor = out[-1].seq
    return out


async def tips(tx: Tx, share_id: str) -> dict[str, tuple[int, bytes]]:
    """Each device's last counter and envelope hash in the share."""
    rows = await tx.fetchall(
        "SELECT device_id, counter, last_hash FROM share_vectors WHERE share_id = ?", share_id
    )
    return {str(r[0]): (int(r[1]), bytes(r[2])) for r in rows}  # type: ignore[call-overload,arg-type]


async def server_vector(tx: Tx, share_id: str) -> dict[str, int]:
    rows = await tx.fetchall(
        "SELECT device_id, counter FROM share_vectors WHERE share_id = ?", share_id
    )
    return {str(r[0]): int(r[1]) for r in rows}  # type: ignore[call-overload]


async def missing_from(
    tx: Tx, share_id: str, vector: Mapping[str, int], limit: int
) -> list[LogEntry]:
    """Entries the holder of ``vector`` lacks, in sequence order (so causally), at most ``limit``.

    The scan starts at the earliest missing entry of any device, and skips what the vector has.
    """
    server = await server_vector(tx, share_id)
    starts: list[int] = []
    for device, counter in server.items():
        have = vector.get(device, 0)
        if counter > have:
            row = await tx.fetchone(
                "SELECT seq FROM envelopes WHERE share_id = ? AND device_id = ? AND counter = ?",
                share_id,
                device,
                have + 1,
            )
            if row is not None:
                starts.append(int(row[0]))  # type: ignore[call-overload]
    if not starts:
        return []
    cursor = min(starts) - 1
    out: list[LogEntry] = []
    size = 0
    while len(out) < limit and size < PAGE_BYTES:
        batch = await since(tx, share_id, cursor, limit)
        if not batch:
            break
        for entry in batch:
            if entry.counter > vector.get(entry.device_id, 0):
                out.append(entry)
                size += len(entry.body)
                if len(out) == limit or size >= PAGE_BYTES:
                    break
        cursor = batch[-1].seq
    return out


async def owed_blocks(tx: Tx, share_id: str, after: bytes | None, limit: int) -> list[bytes]:
    """Block ids envelopes of the share reference that nobody has uploaded yet, by id."""
    rows = await tx.fetchall(
        "SELECT block_id FROM owed_blocks WHERE share_id = ? AND block_id > ? "
        "ORDER BY block_id LIMIT ?",
        share_id,
        after or b"",
        limit,
    )
    return [bytes(r[0]) for r in rows]  # type: ignore[arg-type]


async def count_owed(tx: Tx) -> int:
    row = await tx.fetchone("SELECT COUNT(*) FROM owed_blocks")
    return int(row[0]) if row else 0  # type: ignore[call-overload]
