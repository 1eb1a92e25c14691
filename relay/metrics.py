"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand.

Labels are low-cardinality only: route templates, methods, status codes, error codes. Never a
share, user or device id, a block id or a path: metrics must not identify who synced what.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def samples(self) -> list[str]:
        return [
            f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in self._values.items()
        ]


class Gauge:
    """A value set directly, or read from a callback at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float] | None = None) -> None:
        self.name, self.help, self._read = name, help_text, read
        self._value = 0.0

    def set(self, value: float) -> None:
        self._value = value

    def set_reader(self, read: Callable[[], float]) -> None:
        self._read = read

    def value(self) -> float:
        return float(self._read()) if self._read else self._value

    def samples(self) -> list[str]:
        return [f"{self.name} {_num(self.value())}"]


class Histogram:
    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self.buckets = sorted(buckets)
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}

    def observe(self, value: float, *labels: str) -> None:
        counts = self._counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sums[labels] = self._sums.get(labels, 0.0) + value

    def samples(self) -> list[str]:
        out = []
        for key, counts in self._counts.items():
            running = 0
            for bound, count in zip([*self.buckets, math.inf], counts, strict=True):
                running += count
                le = f'le="{_num(bound)}"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}")
            out.append(f"{self.name}_sum{_labels(self.label_names, key)} {_num(self._sums[key])}")
            out.append(f"{self.name}_count{_labels(self.label_names, key)} {running}")
        return out


Metric = Counter | Gauge | Histogram


class RelayMetrics:
    """Every metric the relay exports, in one place."""

    def __init__(self) -> None:
        self.requests = Counter(
            "drift_relay_requests_total", "HTTP requests answered", ["route", "method", "status"]
        )
        self.request_seconds = Histogram(
            "drift_relay_request_seconds",
            "HTTP request latency",
            [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
            ["route"],
        )
        self.errors = Counter("drift_relay_errors_total", "Refused requests by error", ["code"])
        self.appends = Counter("drift_relay_appends_total", "Envelopes appended to the log")
        self.resends = Counter(
            "drift_relay_resends_total", "Envelopes resent and answered with their original seq"
        )
        self.envelope_bytes = Counter(
            "drift_relay_envelope_bytes_total", "Bytes of envelopes appended"
        )
        self.block_bytes_in = Counter("drift_relay_block_bytes_in_total", "Block bytes stored")
        self.block_bytes_out = Counter("drift_relay_block_bytes_out_total", "Block bytes served")
        self.blocks_stored = Counter("drift_relay_blocks_stored_total", "New blocks stored")
        self.notifications = Counter(
            "drift_relay_notifications_total", "Notifications sent to subscribers", ["transport"]
        )
        self.pushed_entries = Counter(
            "drift_relay_pushed_entries_total",
            "Log entries sent inside WebSocket append notifications (each a log read saved)",
        )
        self.tokens_issued = Counter("drift_relay_tokens_issued_total", "Access tokens issued")
        self.subscribers = Gauge("drift_relay_subscribers", "Live subscriptions (WebSocket+poll)")
        self.owed_blocks = Gauge(
            "drift_relay_owed_blocks", "Blocks referenced by envelopes but not uploaded yet"
        )
        self.websockets = Gauge("drift_relay_websockets", "Open WebSocket connections")

    def all(self) -> list[Metric]:
        return [m for m in vars(self).values() if isinstance(m, Counter | Gauge | Histogram)]

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.all():
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"
