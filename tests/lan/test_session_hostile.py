"""A hostile peer sending any sequence of well-formed messages: the session never crashes, a
refused peer never gets a byte, and a failed session stays failed."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peer.lan.errors import SessionEnded
from peer.lan.session import SessionState
from protocol.chain import MembershipChain, make_genesis
from protocol.messages import (
    BlockData,
    ChainEntries,
    ChainGet,
    ChainHead,
    ErrorMsg,
    GetEnvelopes,
    HaveBlocksReply,
    Heartbeat,
    Message,
    PushEnvelopes,
    WantBlocks,
)
from protocol.vv import VersionVector
from tests.lan.world import ConnectionPair, World, chunk_id_of, side

WORLD = World.build(13)
OTHER = bytes(16)  # a share of the laptop's that the phone is not a member of
OTHER_CHAIN = MembershipChain(make_genesis(WORLD.laptop, OTHER, bytes(32), 1))
SHARES = (WORLD.share, OTHER, bytes([1]) * 16)
SECRET = b"secret chunk"


def messages() -> st.SearchStrategy[Message]:
    share = st.sampled_from(SHARES)
    chunk = st.sampled_from([chunk_id_of(SECRET), bytes(32)])
    height = st.integers(0, 6)
    envelopes = tuple(WORLD.envelopes(WORLD.phone, 2))
    return st.one_of(
        st.builds(
            ChainHead,
            share=share,
            height=height,
            head_hash=st.sampled_from([*WORLD.chain.hashes, bytes(32)]),
        ),
        st.builds(ChainGet, share=share, since_height=height),
        st.builds(
            ChainEntries,
            share=share,
            entries=st.integers(0, 4).map(lambda i: tuple(WORLD.chain.entries[i:])),
        ),
        st.builds(GetEnvelopes, share=share, have=st.just(VersionVector())),
        st.builds(PushEnvelopes, envelopes=st.just(envelopes)),
        st.builds(WantBlocks, share=share, block_ids=st.lists(chunk, max_size=3).map(tuple)),
        st.builds(BlockData, share=share, block_id=chunk, data=st.sampled_from([SECRET, b"x"])),
        st.builds(HaveBlocksReply, share=share, present=st.just(()), missing=st.just((bytes(32),))),
        st.builds(Heartbeat, time_ms=st.just(1)),
        st.just(ErrorMsg(code="fork", message="x", details=(("height", 1),))),
    )


def laptop_session(peer_name: str, height: int):
    laptop = side(WORLD.laptop, WORLD.authorizer(), WORLD.envelopes(WORLD.laptop, 2), [SECRET])
    laptop.authorizer.adopt(OTHER, OTHER_CHAIN)
    peer = side(getattr(WORLD, peer_name), WORLD.authorizer(height=height))
    ConnectionPair(laptop, peer)
    laptop.session.start()
    return laptop


def feed_all(laptop, sequence: list[Message]) -> list[Message]:
    sent = laptop.session.data_to_send()
    for message in sequence:
        if laptop.session.state in (SessionState.CLOSED, SessionState.ERROR):
            try:
                laptop.session.feed(message)
            except SessionEnded:
                continue
            raise AssertionError("an ended session took input")
        laptop.session.feed(message)
        sent += laptop.session.data_to_send()
        laptop.session.events()
    return sent


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["outsider_pc", "removed_pc", "tablet"]), st.lists(messages(), max_size=12))
def test_a_refused_peer_gets_nothing_whatever_it_sends(stranger: str, sequence) -> None:
    laptop = laptop_session(stranger, height=1)
    assert feed_all(laptop, sequence) == []
    assert laptop.chunks.served == 0
    assert laptop.envelopes.served == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), max_size=12))
def test_a_member_sending_nonsense_only_ever_ends_the_session(sequence) -> None:
    laptop = laptop_session("phone", height=4)
    sent = feed_all(laptop, sequence)
    # Whatever went out is about the one share the member is admitted to.
    assert sent, "the chain head goes out first"
    for message in sent:
        shares = {e.header.share for e in getattr(message, "envelopes", ())}
        shares.add(getattr(message, "share", WORLD.share))
        assert shares == {WORLD.share}, message
    if laptop.session.state is SessionState.ERROR:
        assert laptop.session.data_to_send() == []
