"""A model of the membership rules, driven by random operations: the chain agrees with it, and any
replica verifying the chain offline reaches the same state."""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from protocol.chain import (
    ChainEntry,
    MembershipChain,
    Role,
    make_add_user,
    make_change_role,
    make_genesis,
    make_key_epoch,
    make_remove_user,
    verify_chain,
)
from protocol.errors import Forbidden, InvalidChain
from protocol.keys import CertifiedDevice, DeviceIdentity, UserIdentity

USERS = 5
NOW_MS = 1_764_000_000_000


class ChainModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        rand = random.Random(0).randbytes
        self.users = [UserIdentity.generate(rand) for _ in range(USERS)]
        self.devices = [
            CertifiedDevice(d, u.certify(d.public_key, "d", NOW_MS))
            for u in self.users
            for d in [DeviceIdentity.generate(rand)]
        ]
        self.chain = MembershipChain(make_genesis(self.devices[0], bytes(16), bytes(32), NOW_MS))
        self.roles: dict[int, Role] = {0: Role.OWNER}
        self.epoch = 0

    def _submit(self, entry: ChainEntry, allowed: bool) -> None:
        if allowed:
            assert self.chain.append(entry)
            return
        height = self.chain.height
        try:
            self.chain.append(entry)
        except (Forbidden, InvalidChain):
            assert self.chain.height == height
        else:
            raise AssertionError(f"{entry.kind} should have been refused")

    def _signer_ok(self, signer: int) -> bool:
        return self.roles.get(signer) is Role.OWNER

    @rule(
        signer=st.integers(0, USERS - 1),
        user=st.integers(0, USERS - 1),
        role=st.sampled_from(list(Role)),
    )
    def add(self, signer: int, user: int, role: Role) -> None:
        entry = make_add_user(
            self.chain, self.devices[signer], self.users[user].public_key, role, NOW_MS
        )
        allowed = self._signer_ok(signer) and user not in self.roles
        self._submit(entry, allowed)
        if allowed:
            self.roles[user] = role

    @rule(
        signer=st.integers(0, USERS - 1),
        user=st.integers(0, USERS - 1),
        role=st.sampled_from(list(Role)),
    )
    def change(self, signer: int, user: int, role: Role) -> None:
        current = self.roles.get(user)
        demotes = current in (Role.OWNER, Role.EDITOR) and role is Role.VIEWER
        cutoffs = {self.devices[user].device_id: 0} if demotes else {}
        entry = make_change_role(
            self.chain, self.devices[signer], self.users[user].public_key, role, NOW_MS, cutoffs
        )
        last_owner = current is Role.OWNER and list(self.roles.values()).count(Role.OWNER) == 1
        allowed = (
            self._signer_ok(signer)
            and current is not None
            and current is not role
            and not last_owner
        )
        self._submit(entry, allowed)
        if allowed:
            self.roles[user] = role

    @rule(signer=st.integers(0, USERS - 1), user=st.integers(0, USERS - 1))
    def remove(self, signer: int, user: int) -> None:
        current = self.roles.get(user)
        writer = current in (Role.OWNER, Role.EDITOR)
        cutoffs = {self.devices[user].device_id: 0} if writer else {}
        entry = make_remove_user(
            self.chain, self.devices[signer], self.users[user].public_key, cutoffs, NOW_MS
        )
        last_owner = current is Role.OWNER and list(self.roles.values()).count(Role.OWNER) == 1
        allowed = self._signer_ok(signer) and current is not None and not last_owner
        self._submit(entry, allowed)
        if allowed:
            del self.roles[user]

    @precondition(lambda self: self.chain.height < 40)
    @rule(signer=st.integers(0, USERS - 1))
    def rotate(self, signer: int) -> None:
        entry = make_key_epoch(
            self.chain, self.devices[signer], bytes([self.epoch + 1]) * 32, NOW_MS
        )
        allowed = self._signer_ok(signer)
        self._submit(entry, allowed)
        if allowed:
            self.epoch += 1

    @invariant()
    def chain_matches_model(self) -> None:
        members = {self.users[i].user_id: role for i, role in self.roles.items()}
        assert self.chain.members() == members
        assert self.chain.current_epoch == self.epoch

    @invariant()
    def offline_replica_agrees(self) -> None:
        replica = verify_chain([ChainEntry.decode(e.encode()) for e in self.chain.entries])
        assert replica.head_hash == self.chain.head_hash
        assert replica.members() == self.chain.members()
        for height in range(replica.height + 1):
            assert replica.members(height) == self.chain.members(height)
            assert replica.epoch_at(height) == self.chain.epoch_at(height)


ChainModel.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
test_chain_follows_the_membership_rules = ChainModel.TestCase
