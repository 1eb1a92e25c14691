"""Log entries pushed on the notification socket stand in for a log read only while they are the
whole story: a head heard of after them means the pass reads on."""

from __future__ import annotations

from typing import Any

from peer.remote.notify import Notifications

SHARE = "s1"


def _push(since: int, seqs: list[int], last_seq: int) -> dict[str, Any]:
    return {
        "type": "append",
        "share": SHARE,
        "seq": seqs[-1],
        "since": since,
        "entries": [[seq, f"envelope {seq}".encode(), 1_000 + seq] for seq in seqs],
        "last_seq": last_seq,
        "more": False,
        "chain_height": 3,
    }


def _notifications() -> Notifications:
    return Notifications(link=None)  # type: ignore[arg-type]  # the socket is not opened here


def test_pushes_that_follow_on_join_up_and_a_cursor_past_them_takes_nothing() -> None:
    notes = _notifications()
    notes._keep_pushed(_push(10, [11, 12], 12))
    notes._keep_pushed(_push(12, [13], 13))
    page = notes.pushed_page(SHARE, 11)
    assert page is not None
    assert [e[0] for e in page.entries] == [12, 13]
    assert not page.more
    assert notes.pushed_page(SHARE, 11) is None  # taken once
    notes._keep_pushed(_push(20, [21], 21))
    assert notes.pushed_page(SHARE, 19) is None  # behind the push: the log must be read first
    assert notes.pushed_page(SHARE, 21) is None  # past it: nothing left


def test_a_head_announced_after_the_push_makes_the_page_say_more() -> None:
    # Seed 90 of the simulation: entries up to 163 were pushed, then an append of 20 entries
    # (too many to push) announced head 183. The page said "no more", the pass stopped at 163,
    # and the device waited two minutes for its periodic rescan to read the rest.
    notes = _notifications()
    notes._keep_pushed(_push(162, [163], 163))
    notes._note(SHARE, 163)
    notes._note(SHARE, 183)
    page = notes.pushed_page(SHARE, 162)
    assert page is not None
    assert [e[0] for e in page.entries] == [163]
    assert page.more
    assert page.last_seq == 183
