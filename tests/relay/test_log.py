"""The update log on every database backend: sequence allocation, resends, forks, gaps, catch-up."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from relay import log
from relay.db import Database
from relay.db.base import DatabaseError
from relay.db.migrations import LATEST, migrate
from relay.errors import BrokenHashChain, CounterGap, Fork, NotFound


def env(
    device: str, counter: int, body: bytes = b"", blocks: tuple[bytes, ...] = ()
) -> log.NewEnvelope:
    payload = body or f"{device}/{counter}".encode()
    prev = hashlib.sha256(f"{device}/{counter - 1}".encode()).digest() if counter > 1 else None
    return log.NewEnvelope(
        device_id=device,
        counter=counter,
        envelope_hash=hashlib.sha256(payload).digest() if body else _h(device, counter),
        prev_hash=prev,
        body=payload,
        block_ids=blocks,
    )


def _h(device: str, counter: int) -> bytes:
    return hashlib.sha256(f"{device}/{counter}".encode()).digest()


async def make_share(db: Database, share: str = "s1") -> None:
    async with db.write() as tx:
        await tx.execute(
            "INSERT INTO users (user_id, user_key, created_ms, quota_bytes) VALUES (?, ?, 0, 0)",
            "u1",
            b"k",
        )
        await tx.execute(
            "INSERT INTO shares (share_id, owner_user_id, created_ms, chain_height, chain_head) "
            "VALUES (?, 'u1', 0, 0, ?)",
            share,
            b"h",
        )


async def append(db: Database, *items: log.NewEnvelope, share: str = "s1") -> log.AppendResult:
    async with db.write() as tx:
        return await log.append(tx, share, list(items), now_ms=1)


async def test_sequences_resend_and_catch_up(db: Database) -> None:
    await make_share(db)
    first = await append(db, env("a", 1), env("a", 2), env("b", 1))
    assert first.seqs == (1, 2, 3)
    again = await append(db, env("a", 2), env("a", 3))
    assert again.seqs == (2, 4)
    assert again.appended == 1
    async with db.read() as tx:
        assert [e.seq for e in await log.since(tx, "s1", 0, 10)] == [1, 2, 3, 4]
        assert [e.seq for e in await log.since(tx, "s1", 2, 1)] == [3]
        assert await log.server_vector(tx, "s1") == {"a": 3, "b": 1}
        missing = await log.missing_from(tx, "s1", {"a": 1}, 10)
        assert [(e.device_id, e.counter) for e in missing] == [("a", 2), ("b", 1), ("a", 3)]
        assert await log.missing_from(tx, "s1", {"a": 3, "b": 1}, 10) == []
        assert await log.last_seq(tx, "s1") == 4


async def test_refusals_leave_the_log_unchanged(db: Database) -> None:
    await make_share(db)
    await append(db, env("a", 1), env("a", 2))
    forked = log.NewEnvelope("a", 2, b"x" * 32, _h("a", 1), b"other body")
    with pytest.raises(Fork) as fork:
        await append(db, env("b", 1), forked)
    assert fork.value.details["seq"] == 2
    assert fork.value.details["stored"] == b"a/2"
    assert fork.value.details["index"] == 1
    with pytest.raises(CounterGap) as gap:
        await append(db, env("a", 4))
    assert gap.value.details["have"] == 2
    with pytest.raises(BrokenHashChain):
        await append(db, log.NewEnvelope("a", 3, _h("a", 3), b"y" * 32, b"a/3"))
    with pytest.raises(NotFound):
        await append(db, env("a", 1), share="nope")
    async with db.read() as tx:
        # "b/1" was before the fork in the same batch: rolled back with it.
        assert [e.seq for e in await log.since(tx, "s1", 0, 10)] == [1, 2]
        assert await log.server_vector(tx, "s1") == {"a": 2}


async def test_owed_blocks_are_recorded_once(db: Database) -> None:
    await make_share(db)
    await append(
        db, env("a", 1, blocks=(b"\x02" * 32, b"\x01" * 32)), env("a", 2, blocks=(b"\x01" * 32,))
    )
    async with db.write() as tx:
        await tx.execute(
            "INSERT INTO share_blocks (share_id, block_id, size) VALUES ('s1', ?, 5)", b"\x03" * 32
        )
    await append(db, env("a", 3, blocks=(b"\x03" * 32,)))
    async with db.read() as tx:
        assert await log.owed_blocks(tx, "s1", None, 10) == [b"\x01" * 32, b"\x02" * 32]
        assert await log.owed_blocks(tx, "s1", b"\x01" * 32, 10) == [b"\x02" * 32]
        assert await log.count_owed(tx) == 2


async def test_concurrent_writers_get_gapless_sequences(db: Database) -> None:
    await make_share(db)

    async def writer(device: str) -> None:
        for counter in range(1, 21):
            await append(db, env(device, counter))

    await asyncio.wait_for(asyncio.gather(*(writer(f"d{i}") for i in range(5))), 60)
    async with db.read() as tx:
        seqs = [e.seq for e in await log.since(tx, "s1", 0, 1000)]
        assert seqs == list(range(1, 101))
        assert await log.server_vector(tx, "s1") == {f"d{i}": 20 for i in range(5)}


async def test_group_commit_isolates_a_failing_writer(db: Database) -> None:
    await make_share(db)
    await append(db, env("x", 1))

    async def grouped(item: log.NewEnvelope) -> log.AppendResult:
        async with db.write(group="s1") as tx:
            return await log.append(tx, "s1", [item], now_ms=1)

    fork = log.NewEnvelope("x", 1, b"f" * 32, None, b"forked")
    results = await asyncio.wait_for(
        asyncio.gather(
            *(grouped(env(f"g{i}", 1)) for i in range(8)), grouped(fork), return_exceptions=True
        ),
        30,
    )
    assert isinstance(results[-1], Fork)
    assert sorted(r.seqs[0] for r in results[:-1]) == list(range(2, 10))  # type: ignore[union-attr]
    async with db.read() as tx:
        assert [e.seq for e in await log.since(tx, "s1", 0, 100)] == list(range(1, 10))


async def test_migrations_are_idempotent_and_refuse_newer(db: Database) -> None:
    async with db.write() as tx:
        assert await migrate(tx, db.dialect) == LATEST
    async with db.write() as tx:
        await tx.execute(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, 0)", LATEST + 1
        )
    with pytest.raises(DatabaseError, match="newer than this relay"):
        async with db.write() as tx:
            await migrate(tx, db.dialect)


async def test_group_commits_when_the_writer_it_waited_for_is_cancelled(db: Database) -> None:
    await make_share(db)
    gate = asyncio.Event()

    async def first() -> log.AppendResult:
        async with db.write(group="s1") as tx:
            result = await log.append(tx, "s1", [env("a", 1)], now_ms=1)
            await gate.wait()
            return result

    async def second() -> log.AppendResult:
        async with db.write(group="s1") as tx:
            return await log.append(tx, "s1", [env("b", 1)], now_ms=1)

    a = asyncio.create_task(first())
    await asyncio.sleep(0.05)
    b = asyncio.create_task(second())
    await asyncio.sleep(0.05)  # b now waits for a's group
    gate.set()
    await asyncio.sleep(0)  # a finishes its body and hands over to b, which has not run yet
    b.cancel()
    assert (await asyncio.wait_for(a, 10)).seqs == (1,)
    with pytest.raises(asyncio.CancelledError):
        await b
    async with db.read() as tx:
        assert [e.device_id for e in await log.since(tx, "s1", 0, 10)] == ["a"]


async def test_append_times_are_stamped_and_never_go_back(db: Database) -> None:
    """A relay whose clock is behind another's (or read before the lock) never stamps an entry
    earlier than the one before it: "as of a time" is always a prefix of the log."""
    await make_share(db)
    async with db.write() as tx:
        await log.append(tx, "s1", [env("a", 1), env("a", 2)], now_ms=5_000)
    async with db.write() as tx:
        await log.append(tx, "s1", [env("b", 1)], now_ms=4_000)  # a clock behind
    async with db.write() as tx:
        await log.append(tx, "s1", [env("a", 3)], now_ms=7_000)
    async with db.read() as tx:
        entries = await log.since(tx, "s1", 0, 10)
    assert [(e.seq, e.appended_ms) for e in entries] == [
        (1, 5_000),
        (2, 5_000),
        (3, 5_000),
        (4, 7_000),
    ]
