"""An append-only, human-readable event trace with a running hash.

One line per event: virtual milliseconds, host, event name, details. The hash covers every line
ever recorded (also those rotated out of memory), so two runs agree event for event exactly when
their final ``trace: <hash>`` lines agree.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import deque
from collections.abc import Callable
from typing import TextIO

GLOBAL_HOST = "-"


def _running_loop_time() -> float | None:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return None


_SPACE = re.compile(r"\s")


def _format_value(value: object) -> str:
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is str:  # the commonest after int; a subclass may print otherwise, so not those
        return repr(value) if (not value or _SPACE.search(value)) else value  # type: ignore[arg-type]
    if isinstance(value, bytes | bytearray):
        return f"{len(value)}B"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return repr(text) if (not text or _SPACE.search(text)) else text


class Trace:
    """``keep`` bounds the lines held in memory (``None``: all); ``sink`` receives every line."""

    def __init__(
        self,
        *,
        keep: int | None = 100_000,
        sink: TextIO | None = None,
        now: Callable[[], float | None] = _running_loop_time,
    ) -> None:
        self._lines: deque[str] = deque(maxlen=keep)
        self._sink = sink
        self._now = now
        self._hash = hashlib.sha256()
        self._unhashed: list[str] = []  # hashed in bulk: the same bytes, far fewer calls
        self._last_s = 0.0
        self.count = 0

    def record(self, host: str, event: str, **details: object) -> None:
        now = self._now()
        # Outside a running loop (set-up, or after the run ended) events keep the last time seen.
        self._last_s = now if now is not None else self._last_s
        line = f"{self._last_s * 1000:12.3f} {host:<10} {event}"
        if details:  # every network frame records a line: a list join, no generator
            line += " " + " ".join(
                [
                    f"{key}={value}" if type(value) is int else f"{key}={_format_value(value)}"
                    for key, value in details.items()
                ]
            )
        self.count += 1
        self._lines.append(line)
        self._unhashed.append(line)
        if len(self._unhashed) >= 512:
            self._hash_lines()
        if self._sink is not None:
            self._sink.write(line + "\n")

    def _hash_lines(self) -> None:
        # Each line and its newline, in order: what one update per line would have hashed.
        self._hash.update(("\n".join(self._unhashed) + "\n").encode())
        self._unhashed.clear()

    @property
    def digest(self) -> str:
        if self._unhashed:
            self._hash_lines()
        return self._hash.hexdigest()[:32]

    @property
    def lines(self) -> list[str]:
        """The most recent lines (all of them unless ``keep`` rotated some out)."""
        return list(self._lines)

    def final_line(self) -> str:
        """The run's last line, ``trace: <hash>``; equal for equal runs."""
        return f"trace: {self.digest}"

    def finish(self) -> str:
        """Write the ``trace: <hash>`` line to the sink (it is not itself hashed) and return it."""
        line = self.final_line()
        if self._sink is not None:
            self._sink.write(line + "\n")
            self._sink.flush()
        return line

    def tail(self, n: int = 40) -> str:
        return "\n".join(list(self._lines)[-n:])
