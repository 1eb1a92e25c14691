"""Stateful property test of the update log against a model: any interleaving of appends,
resends, forks and gaps keeps sequence numbers gapless and every answer consistent."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from relay import log
from relay.db.sqlite import MemoryDatabase
from relay.errors import BrokenHashChain, CounterGap, Fork

DEVICES = ("a", "b", "c")


def _hash(device: str, counter: int, variant: int = 0) -> bytes:
    return hashlib.sha256(f"{device}/{counter}/{variant}".encode()).digest()


def _envelope(device: str, counter: int, variant: int = 0) -> log.NewEnvelope:
    return log.NewEnvelope(
        device_id=device,
        counter=counter,
        envelope_hash=_hash(device, counter, variant),
        prev_hash=_hash(device, counter - 1) if counter > 1 else None,
        body=f"{device}/{counter}/{variant}".encode(),
    )


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.db = self.run(MemoryDatabase().open())
        self.run(self._share())
        self.counters = dict.fromkeys(DEVICES, 0)
        self.order: list[tuple[str, int]] = []  # (device, counter) by seq

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    async def _share(self) -> None:
        async with self.db.write() as tx:
            await tx.execute(
                "INSERT INTO users (user_id, user_key, created_ms, quota_bytes) "
                "VALUES ('u', x'00', 0, 0)"
            )
            await tx.execute(
                "INSERT INTO shares (share_id, owner_user_id, created_ms, chain_height, "
                "chain_head) VALUES ('s', 'u', 0, 0, x'00')"
            )

    async def _append(self, items: list[log.NewEnvelope]) -> log.AppendResult:
        async with self.db.write() as tx:
            return await log.append(tx, "s", items, now_ms=0)

    @rule(device=st.sampled_from(DEVICES), count=st.integers(1, 3))
    def append_next(self, device: str, count: int) -> None:
        first = self.counters[device] + 1
        items = [_envelope(device, c) for c in range(first, first + count)]
        result = self.run(self._append(items))
        expected = list(range(len(self.order) + 1, len(self.order) + 1 + count))
        assert list(result.seqs) == expected
        self.counters[device] += count
        self.order += [(device, c) for c in range(first, first + count)]

    @precondition(lambda self: self.order)
    @rule(data=st.data())
    def resend(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.order) - 1))
        device, counter = self.order[index]
        result = self.run(self._append([_envelope(device, counter)]))
        assert result.seqs == (index + 1,)
        assert result.appended == 0

    @precondition(lambda self: self.order)
    @rule(data=st.data(), then_next=st.booleans())
    def fork(self, data: st.DataObject, then_next: bool) -> None:
        index = data.draw(st.integers(0, len(self.order) - 1))
        device, counter = self.order[index]
        items = [_envelope(device, counter, variant=1)]
        if then_next:  # a good envelope before the fork in the same batch is rolled back too
            other = next(d for d in DEVICES if d != device)
            items.insert(0, _envelope(other, self.counters[other] + 1))
        with pytest.raises(Fork):
            self.run(self._append(items))

    @rule(device=st.sampled_from(DEVICES), skip=st.integers(2, 4))
    def gap(self, device: str, skip: int) -> None:
        with pytest.raises((CounterGap, BrokenHashChain)):
            self.run(self._append([_envelope(device, self.counters[device] + skip)]))

    @invariant()
    def log_matches_model(self) -> None:
        async def read() -> tuple[list[log.LogEntry], dict[str, int], list[log.LogEntry]]:
            async with self.db.read() as tx:
                entries = await log.since(tx, "s", 0, 10_000)
                vector = await log.server_vector(tx, "s")
                half = {d: c // 2 for d, c in self.counters.items()}
                missing = await log.missing_from(tx, "s", half, 10_000)
            return entries, vector, missing

        entries, vector, missing = self.run(read())
        assert [(e.device_id, e.counter) for e in entries] == self.order
        assert [e.seq for e in entries] == list(range(1, len(self.order) + 1))
        assert vector == {d: c for d, c in self.counters.items() if c}
        half = {d: c // 2 for d, c in self.counters.items()}
        assert [(e.device_id, e.counter) for e in missing] == [
            (d, c) for d, c in self.order if c > half[d]
        ]

    def teardown(self) -> None:
        self.run(self.db.close())
        self.loop.close()


LogMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
test_log_state_machine = LogMachine.TestCase
