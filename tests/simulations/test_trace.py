"""The trace: readable lines, a hash over every line ever recorded, a final ``trace:`` line."""

from __future__ import annotations

import io

from simulations.runtime import Trace


def test_lines_show_virtual_milliseconds_host_event_and_details() -> None:
    trace = Trace(now=lambda: 12.3456)
    trace.record("laptop", "tcp.send", conn=3, size=b"abc", note="two words", ratio=0.125)
    trace.record("-", "net.heal")
    trace.record("relay", "tcp.close", reason="")
    assert trace.lines == [
        "   12345.600 laptop     tcp.send conn=3 size=3B note='two words' ratio=0.125",
        "   12345.600 -          net.heal",
        "   12345.600 relay      tcp.close reason=''",
    ]
    assert trace.count == 3


def test_the_hash_covers_lines_rotated_out_of_memory() -> None:
    full, short = Trace(now=lambda: 0.0, keep=None), Trace(now=lambda: 0.0, keep=2)
    for trace in (full, short):
        for i in range(10):
            trace.record("a", "tick", i=i)
    assert full.digest == short.digest
    assert len(full.lines) == 10
    assert short.lines == full.lines[-2:]
    assert short.tail(1) == full.lines[-1]


def test_any_difference_in_content_or_order_changes_the_hash() -> None:
    def digest(*events: tuple[str, str]) -> str:
        trace = Trace(now=lambda: 0.0)
        for host, event in events:
            trace.record(host, event)
        return trace.digest

    base = digest(("a", "x"), ("b", "y"))
    assert base == digest(("a", "x"), ("b", "y"))
    assert base != digest(("b", "y"), ("a", "x"))
    assert base != digest(("a", "x"), ("b", "z"))
    assert base != digest(("a", "x"))


def test_the_sink_gets_every_line_and_the_final_hash_line() -> None:
    sink = io.StringIO()
    trace = Trace(now=lambda: 0.001, sink=sink)
    trace.record("a", "hello")
    before = trace.digest
    final = trace.finish()
    assert final == f"trace: {before}" == trace.final_line()
    assert trace.digest == before  # the final line is not part of what it hashes
    assert sink.getvalue() == f"       1.000 a          hello\n{final}\n"
    assert len(before) == 32
