"""Metrics render as Prometheus text; logs are JSON and redact anything token-like."""

from __future__ import annotations

import io
import logging

from relay.logs import configure, redact
from relay.metrics import RelayMetrics


def test_render_text_exposition() -> None:
    m = RelayMetrics()
    m.requests.inc(1, "/v1/shares/{share}/envelopes", "POST", "200")
    m.request_seconds.observe(0.003, "/healthz")
    m.subscribers.set(3)
    text = m.render()
    assert "# TYPE drift_relay_requests_total counter" in text
    assert (
        'drift_relay_requests_total{route="/v1/shares/{share}/envelopes",method="POST",'
        'status="200"} 1' in text
    )
    assert 'drift_relay_request_seconds_bucket{route="/healthz",le="0.005"} 1' in text
    assert 'drift_relay_request_seconds_bucket{route="/healthz",le="+Inf"} 1' in text
    assert "drift_relay_subscribers 3" in text


def test_logs_are_json_and_redacted() -> None:
    stream = io.StringIO()
    configure("INFO", stream)
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    logging.getLogger("relay.test").info("got Authorization: Bearer %s", token)
    line = stream.getvalue()
    assert token not in line
    assert '"msg":"got Authorization: Bearer [redacted]"' in line
    assert redact(f"x {token} y") == "x [redacted] y"
