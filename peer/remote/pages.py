"""Reading the relay's answers: a field of the right type, a page of the update log.

A log page comes from ``GET …/envelopes`` and, for a few small entries, inside the WebSocket's
``append`` notification: both go through :func:`parse_page`, and the entries through the same
replica checks whatever brought them.
"""

from __future__ import annotations

import itertools
from typing import Any

from peer.errors import RelayUnreachable
from peer.remote.link import LogPage


def answer_field(answer: Any, name: str, kind: type) -> Any:
    if not isinstance(answer, dict) or not isinstance(answer.get(name), kind):
        raise RelayUnreachable(
            f"the relay's answer lacks {name!r}; is the URL a driftsync relay of this version?"
        )
    return answer[name]


def parse_page(answer: Any) -> LogPage:
    entries: list[tuple[int, bytes, int | None]] = []
    for entry in answer_field(answer, "entries", list):
        # [seq, envelope, appended_ms]; relays before append times sent [seq, envelope].
        if not isinstance(entry, list | tuple) or len(entry) not in (2, 3):
            raise RelayUnreachable("the relay's log page holds an entry of an unknown shape")
        if not isinstance(entry[0], int) or not isinstance(entry[1], bytes | bytearray):
            raise RelayUnreachable("the relay's log page holds an entry of an unknown shape")
        appended_ms = int(entry[2]) if len(entry) == 3 and entry[2] is not None else None
        entries.append((int(entry[0]), bytes(entry[1]), appended_ms))
    if any(a[0] >= b[0] for a, b in itertools.pairwise(entries)):
        raise RelayUnreachable("the relay's log page is not in ascending order")
    height = answer.get("chain_height") if isinstance(answer, dict) else None
    return LogPage(
        tuple(entries),
        answer_field(answer, "last_seq", int),
        answer_field(answer, "more", bool),
        height if isinstance(height, int) and not isinstance(height, bool) else None,
    )
