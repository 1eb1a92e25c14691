"""The LAN session, two machines over an in-memory link: heads first, then envelopes and chunks."""

from __future__ import annotations

import dataclasses

import pytest

from peer.lan import events as ev
from peer.lan.authorizer import Refusal
from peer.lan.errors import NotAdmitted, SessionEnded
from peer.lan.session import SessionLimits, SessionState
from protocol.chain import MembershipChain, Role, make_add_user, make_genesis, verify_chain
from protocol.messages import (
    BlockData,
    ChainEntries,
    ChainGet,
    ChainHead,
    GetEnvelopes,
    PushEnvelopes,
    WantBlocks,
)
from protocol.vv import VersionVector
from tests.lan.world import ConnectionPair, World, chunk_id_of, side


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(3)


def of_type(events: list[ev.Event], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def test_members_agree_on_the_longer_chain_then_swap_what_the_other_lacks(world: World) -> None:
    laptop_envelopes = world.envelopes(world.laptop, 3)
    phone_envelopes = world.envelopes(world.phone, 2)
    laptop = side(world.laptop, world.authorizer(), laptop_envelopes, [b"chunk one", b"two"])
    phone = side(world.phone, world.authorizer(height=1), phone_envelopes)
    pair = ConnectionPair(laptop, phone)
    pair.start()

    # The phone was behind: it fetched from its own head and adopted the laptop's chain.
    assert phone.authorizer.chain(world.share).head_hash == world.chain.head_hash
    adopted = of_type(phone.received, ev.ChainAdopted)
    assert [(e.share, e.height) for e in adopted] == [(world.share, world.chain.height)]
    assert ChainGet(share=world.share, since_height=1) in phone.sent
    assert ev.ChainsAgreed(world.share, world.chain.height) in laptop.received
    assert ev.ChainsAgreed(world.share, world.chain.height) in phone.received
    # Heads go out before anything else, on both sides.
    assert isinstance(laptop.sent[0], ChainHead)
    assert isinstance(phone.sent[0], ChainHead)

    assert laptop.envelopes.vector(world.share) == phone.envelopes.vector(world.share)
    assert laptop.envelopes.vector(world.share) == VersionVector(
        {world.laptop.device_id: 3, world.phone.device_id: 2}
    )
    assert laptop.session.state is phone.session.state is SessionState.SYNCING
    assert laptop.session.shares() == phone.session.shares() == [world.share]

    wanted = [chunk_id_of(b"chunk one"), chunk_id_of(b"two"), chunk_id_of(b"absent")]
    assert phone.session.want_chunks(world.share, wanted) == wanted
    pair.pump()
    events = phone.take_events()
    got = of_type(events, ev.ChunkReceived)
    assert {(e.chunk_id, e.data) for e in got} == {
        (chunk_id_of(b"chunk one"), b"chunk one"),
        (chunk_id_of(b"two"), b"two"),
    }
    assert of_type(events, ev.ChunksUnavailable) == [
        ev.ChunksUnavailable(world.share, (chunk_id_of(b"absent"),))
    ]
    assert phone.session.pending_chunks() == 0
    assert phone.session.state is SessionState.SYNCING


def test_missing_chunks_are_reported_and_the_session_goes_on(world: World) -> None:
    laptop = side(world.laptop, world.authorizer())
    phone = side(world.phone, world.authorizer())
    pair = ConnectionPair(laptop, phone)
    pair.start()
    phone.take_events()
    phone.session.want_chunks(world.share, [chunk_id_of(b"nobody has this")])
    pair.pump()
    assert phone.take_events() == [
        ev.ChunksUnavailable(world.share, (chunk_id_of(b"nobody has this"),))
    ]
    assert phone.session.state is SessionState.SYNCING


def test_local_changes_are_pushed_once(world: World) -> None:
    first, later = world.envelopes(world.laptop, 1), world.envelopes(world.laptop, 1, start=2)
    laptop = side(world.laptop, world.authorizer(), first)
    phone = side(world.phone, world.authorizer())
    pair = ConnectionPair(laptop, phone)
    pair.start()
    assert phone.envelopes.vector(world.share) == VersionVector({world.laptop.device_id: 1})
    laptop.envelopes.add(later)
    assert laptop.session.push(world.share, first + later) == 1  # the phone has the first
    pair.pump()
    assert phone.envelopes.vector(world.share) == VersionVector({world.laptop.device_id: 2})
    assert laptop.session.push(world.share, later) == 0


@pytest.mark.parametrize(
    ("stranger", "reason"),
    [("outsider_pc", Refusal.NOT_MEMBER), ("removed_pc", Refusal.REMOVED), ("tablet", "revoked")],
)
def test_non_members_get_nothing_at_all(world: World, stranger: str, reason: str) -> None:
    device = getattr(world, stranger)
    laptop = side(world.laptop, world.authorizer(), world.envelopes(world.laptop, 2), [b"secret"])
    # The stranger knows an old chain that still admits everyone, and asks for everything.
    intruder = side(device, world.authorizer(height=1))
    pair = ConnectionPair(laptop, intruder)
    assert laptop.authorizer.refusal(world.share, device.certificate) == reason
    pair.start()
    share = world.share
    for message in (
        ChainHead(share=share, height=4, head_hash=world.chain.head_hash),
        ChainGet(share=share, since_height=0),
        GetEnvelopes(share=share, have=VersionVector()),
        WantBlocks(share=share, block_ids=(chunk_id_of(b"secret"),)),
    ):
        if laptop.session.state is SessionState.CLOSED:
            break
        laptop.session.feed(message)
    assert laptop.sent == []
    assert laptop.session.data_to_send() == []
    assert laptop.session.state is SessionState.CLOSED
    assert laptop.chunks.served == 0
    assert of_type(intruder.received, ev.EnvelopesReceived) == []


def test_a_chain_removing_the_peer_ends_its_admission_at_once(world: World) -> None:
    # The laptop and the removed user's pc both hold the chain from before the removal.
    laptop = side(world.laptop, world.authorizer(height=2), [], [b"later chunk"])
    pc = side(world.removed_pc, world.authorizer(height=2))
    pair = ConnectionPair(laptop, pc)
    pair.start()
    assert laptop.session.state is SessionState.SYNCING
    # The laptop learns the removal (from the engine, or another peer), then the pc asks.
    laptop.authorizer.adopt(world.share, world.chain_copy())
    pc.session.want_chunks(world.share, [chunk_id_of(b"later chunk")])
    pair.pump()
    assert ev.AdmissionEnded(world.share, Refusal.REMOVED) in laptop.received
    assert laptop.session.state is SessionState.CLOSED
    assert laptop.chunks.served == 0
    assert not any(isinstance(m, BlockData) for m in laptop.sent)


def test_a_forked_chain_is_refused_and_never_adopted(world: World) -> None:
    ours = world.chain_copy(height=2)
    theirs = world.chain_copy(height=1)
    theirs.append(make_add_user(theirs, world.laptop, world.outsider.public_key, Role.VIEWER, 1))
    theirs.append(
        make_add_user(theirs, world.laptop, world.removed_user.public_key, Role.EDITOR, 2)
    )
    laptop = side(world.laptop, world.authorizer(height=2))
    phone = side(world.phone, world.authorizer(height=1))
    phone.authorizer.adopt(world.share, verify_chain(theirs.entries, world.share))
    pair = ConnectionPair(laptop, phone)
    pair.start()
    assert ev.ChainForked(world.share, 2) in laptop.received
    assert ev.ChainForked(world.share, 2) in phone.received
    assert laptop.authorizer.chain(world.share).head_hash == ours.head_hash
    assert phone.authorizer.chain(world.share).head_hash == theirs.head_hash
    assert laptop.session.state is phone.session.state is SessionState.CLOSED
    assert not any(isinstance(m, GetEnvelopes | PushEnvelopes) for m in laptop.sent + phone.sent)


def test_a_fork_found_while_fetching_is_refused(world: World) -> None:
    theirs = world.chain_copy(height=1)
    theirs.append(make_add_user(theirs, world.laptop, world.outsider.public_key, Role.VIEWER, 1))
    laptop = side(world.laptop, world.authorizer())  # height 4
    phone = side(world.phone, world.authorizer(height=1))
    phone.authorizer.adopt(world.share, verify_chain(theirs.entries, world.share))
    pair = ConnectionPair(laptop, phone)
    pair.start()
    assert ev.ChainForked(world.share, 2) in phone.received
    assert phone.authorizer.chain(world.share).head_hash == theirs.head_hash
    assert of_type(phone.received, ev.ChainAdopted) == []


def test_a_corrupt_chunk_is_detected_and_the_peer_dropped(world: World) -> None:
    laptop = side(world.laptop, world.authorizer(), chunks=[b"data", b"more"], corrupt=True)
    phone = side(world.phone, world.authorizer())
    pair = ConnectionPair(laptop, phone)
    pair.start()
    phone.take_events()
    ids = [chunk_id_of(b"data"), chunk_id_of(b"more")]
    phone.session.want_chunks(world.share, ids)
    pair.pump()
    got = phone.take_events()
    assert isinstance(got[0], ev.PeerMisbehaved)
    assert "does not match" in got[0].reason
    assert got[1:] == [ev.ChunksUnavailable(world.share, tuple(ids))]
    assert phone.session.state is SessionState.ERROR
    with pytest.raises(SessionEnded):
        phone.session.want_chunks(world.share, ids)


def synced(world: World, **limits: int) -> ConnectionPair:
    laptop = side(world.laptop, world.authorizer(), [], [b"x"])
    phone = side(world.phone, world.authorizer())
    pair = ConnectionPair(laptop, phone, SessionLimits(**limits))
    pair.start()
    laptop.take_events()
    phone.take_events()
    return pair


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(
            lambda w: BlockData(share=w.share, block_id=chunk_id_of(b"x"), data=b"x"),
            id="unasked-chunk",
        ),
        pytest.param(
            lambda w: ChainEntries(share=w.share, entries=tuple(w.chain.entries)),
            id="unasked-chain-entries",
        ),
        pytest.param(
            lambda w: WantBlocks(share=w.share, block_ids=(bytes(32),) * 3), id="too-many-chunk-ids"
        ),
        pytest.param(lambda w: GetEnvelopes(share=w.share, since_seq=3), id="relay-cursor"),
        pytest.param(lambda w: ChainGet(share=w.share, since_height=99), id="past-our-head"),
    ],
)
def test_violations_move_to_error_and_send_nothing(world: World, message) -> None:
    pair = synced(world, max_chunks_per_request=2)
    laptop = pair.a
    laptop.session.feed(message(world))
    assert laptop.session.state is SessionState.ERROR
    assert laptop.session.data_to_send() == []
    assert isinstance(laptop.session.events()[0], ev.PeerMisbehaved)
    with pytest.raises(SessionEnded):
        laptop.session.feed(message(world))


def test_requests_before_the_chain_head_are_violations(world: World) -> None:
    laptop = side(world.laptop, world.authorizer(), world.envelopes(world.laptop, 1))
    phone = side(world.phone, world.authorizer())
    pair = ConnectionPair(laptop, phone)
    laptop.session.start()
    laptop.session.feed(GetEnvelopes(share=world.share, have=VersionVector()))
    assert laptop.session.state is SessionState.ERROR
    assert laptop.session.data_to_send() == []
    assert pair.b.session.state is SessionState.HELLO


def test_messages_before_start_are_violations(world: World) -> None:
    pair = ConnectionPair(
        side(world.laptop, world.authorizer()), side(world.phone, world.authorizer())
    )
    pair.a.session.feed(ChainHead(share=world.share, height=0, head_hash=bytes(32)))
    assert pair.a.session.state is SessionState.ERROR


def test_invalid_chain_entries_leave_our_chain_untouched(world: World) -> None:
    laptop = side(world.laptop, world.authorizer())
    phone = side(world.phone, world.authorizer(height=1))
    ConnectionPair(laptop, phone)
    phone.session.start()
    laptop.session.start()
    phone.session.feed(laptop.session.data_to_send()[0])  # the laptop's head: phone asks
    assert phone.session.data_to_send()[-1] == ChainGet(share=world.share, since_height=1)
    entries = list(world.chain.entries[1:])
    entries[2] = dataclasses.replace(entries[2], sig=bytes(64))
    phone.session.feed(ChainEntries(share=world.share, entries=tuple(entries)))
    assert phone.session.state is SessionState.ERROR
    assert phone.authorizer.chain(world.share).height == 1
    assert of_type(phone.session.events(), ev.ChainAdopted) == []


def test_a_peer_that_announces_a_head_it_does_not_deliver_is_dropped(world: World) -> None:
    phone = side(world.phone, world.authorizer(height=1))
    laptop = side(world.laptop, world.authorizer())
    ConnectionPair(laptop, phone)
    phone.session.start()
    phone.session.feed(ChainHead(share=world.share, height=9, head_hash=bytes(32)))
    phone.session.feed(ChainEntries(share=world.share, entries=(world.chain.entries[1],)))
    assert phone.session.state is SessionState.ERROR


def test_chunks_of_a_share_that_is_not_open_are_refused_locally(world: World) -> None:
    pair = synced(world)
    with pytest.raises(NotAdmitted):
        pair.b.session.want_chunks(bytes(16), [bytes(32)])
    with pytest.raises(ValueError, match="pending"):
        pair.b.session.want_chunks(world.share, [i.to_bytes(2, "big") * 16 for i in range(2000)])


def test_a_chain_the_engine_extends_is_announced(world: World) -> None:
    laptop = side(world.laptop, world.authorizer(height=3))
    phone = side(world.phone, world.authorizer(height=3))
    pair = ConnectionPair(laptop, phone)
    pair.start()
    laptop.authorizer.adopt(world.share, world.chain_copy())
    laptop.session.chains_changed()
    pair.pump()
    assert phone.authorizer.chain(world.share).height == world.chain.height
    assert ev.ChainAdopted(world.share, world.chain, world.chain.height) in phone.received


def test_a_peer_added_in_a_chain_we_lack_is_admitted_once_a_member_brings_it(
    world: World,
) -> None:
    # A second share: the laptop knows only its genesis; the phone and the desktop know that the
    # editor joined.
    second = bytes(range(16))
    genesis_only = MembershipChain(make_genesis(world.laptop, second, bytes(32), 1))
    with_editor = verify_chain(genesis_only.entries, second)
    with_editor.append(
        make_add_user(with_editor, world.laptop, world.editor.public_key, Role.EDITOR, 2)
    )
    laptop = side(world.laptop, world.authorizer(), chunks=[b"in the second share"])
    laptop.authorizer.adopt(second, genesis_only)
    phone = side(world.phone, world.authorizer())
    phone.authorizer.adopt(second, with_editor)
    to_phone = ConnectionPair(laptop, phone)
    to_phone.start()
    # The phone claims the second share; the laptop does not admit it there, so asks nothing.
    assert laptop.session.shares() == [world.share]
    assert all(getattr(m, "share", world.share) == world.share for m in laptop.sent)

    desktop = side(world.desktop, world.authorizer())
    desktop.authorizer.adopt(second, verify_chain(with_editor.entries, second))
    ConnectionPair(side(world.laptop, laptop.authorizer), desktop).start()
    assert laptop.authorizer.chain(second).height == 1  # adopted from the desktop

    laptop.session.chains_changed()
    to_phone.pump()
    assert ev.ChainsAgreed(second, 1) in laptop.received
    assert sorted(laptop.session.shares()) == sorted([world.share, second])
    phone.session.want_chunks(second, [chunk_id_of(b"in the second share")])
    to_phone.pump()
    chunk = ev.ChunkReceived(second, chunk_id_of(b"in the second share"), b"in the second share")
    assert chunk in phone.received


def test_a_chain_adopted_from_one_peer_is_passed_on_to_the_others(world: World) -> None:
    phone_authorizer = world.authorizer(height=2)
    desktop = side(world.desktop, world.authorizer(height=2))
    to_desktop = ConnectionPair(side(world.phone, phone_authorizer), desktop)
    to_desktop.start()
    to_laptop = ConnectionPair(
        side(world.phone, phone_authorizer), side(world.laptop, world.authorizer())
    )
    to_laptop.start()
    assert phone_authorizer.chain(world.share).height == world.chain.height
    to_desktop.a.session.chains_changed()  # what the engine does on ChainAdopted
    to_desktop.pump()
    assert desktop.authorizer.chain(world.share).height == world.chain.height
    assert desktop.session.state is SessionState.SYNCING
