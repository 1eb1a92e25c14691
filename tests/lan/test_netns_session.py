"""LAN sessions across namespaces: mDNS, TLS, chains, envelopes and chunks between real processes.

Two owner devices serve the share (the desktop serves corrupt chunks); a member joins and gets
every envelope and every chunk (the corrupt ones from the honest server); a non-member, a removed
user's device and a revoked device discover both servers but get nothing beyond the handshake.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.netns import TestBed

pytestmark = pytest.mark.netns

AGENT = "tests.lan.agent_session"
JOINERS = ("phone", "outsider_pc", "removed_pc", "tablet")


def test_members_get_envelopes_and_chunks_others_only_discover(
    netns_bed: Callable[[int], TestBed],
) -> None:
    bed = netns_bed(2 + len(JOINERS))
    laptop_ns, desktop_ns, *joiner_ns = bed.devices
    servers = {
        "laptop": bed.spawn(
            laptop_ns, AGENT, "serve", "--who", "laptop", "--listen", laptop_ns.address
        ),
        "desktop": bed.spawn(
            desktop_ns,
            AGENT,
            "serve",
            "--who",
            "desktop",
            "--listen",
            desktop_ns.address,
            "--corrupt",
        ),
    }
    for server in servers.values():
        server.expect(lambda m: m["event"] == "listening", 15, "listening")
    joiners = {
        who: bed.spawn(ns, AGENT, "join", "--who", who, "--listen", ns.address, "--peers", "2")
        for who, ns in zip(JOINERS, joiner_ns, strict=True)
    }
    server_addresses = sorted([laptop_ns.address, desktop_ns.address])
    done = {}
    for who, joiner in joiners.items():
        found = joiner.expect(lambda m: m["event"] == "discovered", 25, "both servers")
        assert sorted(found["addresses"]) == server_addresses, who
        done[who] = joiner.expect(lambda m: m["event"] == "done", 30, "the end")

    phone = joiners["phone"]
    fetched = phone.expect(lambda m: m["event"] == "fetched", 1, "the fetch")
    assert fetched["complete"] is True
    assert fetched["missing"] == 0
    assert set(fetched["bytes_from"]) == {"laptop"}  # nothing the corrupt desktop sent was kept
    assert fetched["misbehaved"] == ["desktop"]
    assert done["phone"]["envelopes"] == 5  # its own two and the laptop's three
    assert done["phone"]["chain_height"] == 4  # it adopted the longer chain
    assert done["phone"]["misbehaviour_seen"] >= 1

    for who in JOINERS[1:]:
        refused = [m for m in joiners[who].messages if m["event"] == "refused"]
        assert sorted(m["address"] for m in refused) == server_addresses, who
        assert not any(m["event"] == "connected" for m in joiners[who].messages), who
        assert done[who]["envelopes"] == 0, who

    for name, server in servers.items():
        server.stop()
        served = next(m for m in server.drain() if m["event"] == "served")
        assert served["links"] == ["phone"], name  # the others never got a session
        assert set(served["sent_bytes"]) == {"phone"}, name
    laptop_served = next(m for m in servers["laptop"].messages if m["event"] == "served")
    assert laptop_served["envelopes"] == 3
    assert laptop_served["chunks"] >= 1
