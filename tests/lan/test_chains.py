"""Adopting a peer's longer chain: late answers (entries we already hold) are no offence."""

from __future__ import annotations

import pytest

from peer.lan.chains import extend
from protocol.errors import InvalidChain
from tests.lan.world import World


def test_entries_starting_below_our_head_extend_it() -> None:
    world = World.build(3)
    ours = world.chain_copy(2)
    # Asked when our head was 1; another peer brought height 2 meanwhile.
    longer = extend(ours, world.chain.entries[1:])
    assert longer.height == world.chain.height
    assert longer.head_hash == world.chain.head_hash


def test_entries_already_held_add_nothing() -> None:
    world = World.build(3)
    ours = world.chain_copy(3)
    assert extend(ours, world.chain.entries[1:4]).height == 3


def test_entries_past_our_head_or_with_a_gap_are_refused() -> None:
    world = World.build(3)
    ours = world.chain_copy(1)
    with pytest.raises(InvalidChain):
        extend(ours, world.chain.entries[3:])
    with pytest.raises(InvalidChain):
        extend(ours, [world.chain.entries[1], world.chain.entries[3]])
