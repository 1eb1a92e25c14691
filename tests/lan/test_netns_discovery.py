"""Real mDNS across a bridge: devices in their own namespaces find each other unconfigured."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.netns import NsProcess, TestBed
from tests.netns.bed import run

pytestmark = pytest.mark.netns

AGENT = "tests.lan.agent_discovery"
PORT = 4242
SEEN_TIMEOUT_S = 15.0


def start_agents(
    bed: TestBed,
    shares_per_device: list[dict[str, bytes]],
    *extra: str,
    skew_hours: list[float] | None = None,
    per_device: list[list[str]] | None = None,
) -> list[NsProcess]:
    agents = []
    skews = skew_hours or [0.0] * len(bed.devices)
    own_args = per_device or [[] for _ in bed.devices]
    for device, shares, skew, own in zip(
        bed.devices, shares_per_device, skews, own_args, strict=True
    ):
        args = ["--address", device.address, "--port", str(PORT), "--seconds", "40", *extra]
        args += ["--skew-hours", str(skew), *own]
        for label, key in shares.items():
            args += ["--share", f"{label}={key.hex()}"]
        agents.append(bed.spawn(device, AGENT, *args))
    for agent in agents:
        agent.expect(lambda m: m["event"] == "started", SEEN_TIMEOUT_S, "started")
    return agents


def sees(address: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["event"] == "seen" and address in m["addresses"]


def test_two_devices_discover_each_other_and_their_shared_share(
    netns_bed: Callable[[int], TestBed],
) -> None:
    bed = netns_bed(2)
    photos = os.urandom(32)
    a, b = start_agents(
        bed,
        [{"photos": photos}, {"photos": photos, "docs": os.urandom(32)}],
        "--static",
        "10.77.0.200:4000",
    )
    seen_by_a = a.expect(sees(bed.devices[1].address), SEEN_TIMEOUT_S, "about device 1")
    seen_by_b = b.expect(sees(bed.devices[0].address), SEEN_TIMEOUT_S, "about device 0")
    assert seen_by_a["shares"] == ["photos"]
    assert seen_by_b["shares"] == ["photos"]
    assert seen_by_a["port"] == seen_by_b["port"] == PORT
    assert seen_by_a["addresses"] == [bed.devices[1].address]
    assert seen_by_a["version"] == 1
    # Nobody reports itself, and no device id or share name is in what was announced.
    assert all(bed.devices[0].address not in m.get("addresses", []) for m in a.messages)
    # A configured peer is reported as seen, for every share, without any announcement.
    static = a.expect(lambda m: m["event"] == "seen" and m["source"] == "static", 1, "static")
    assert static["addresses"] == ["10.77.0.200"]
    assert static["port"] == 4000
    assert static["shares"] == ["photos"]


def test_three_devices_and_a_stranger_with_another_key(
    netns_bed: Callable[[int], TestBed],
) -> None:
    bed = netns_bed(4)
    key = os.urandom(32)
    agents = start_agents(bed, [{"s": key}, {"s": key}, {"s": key}, {"s": os.urandom(32)}])
    for index, agent in enumerate(agents[:3]):
        for other in range(4):
            if other == index:
                continue
            seen = agent.expect(
                sees(bed.devices[other].address), SEEN_TIMEOUT_S, f"about device {other}"
            )
            # The stranger is visible on the network but matches none of our shares.
            assert seen["shares"] == ([] if other == 3 else ["s"])
    stranger = agents[3]
    for other in range(3):
        seen = stranger.expect(sees(bed.devices[other].address), SEEN_TIMEOUT_S, "a member")
        assert seen["shares"] == []


def test_a_departing_device_is_reported_gone(netns_bed: Callable[[int], TestBed]) -> None:
    bed = netns_bed(2)
    key = os.urandom(32)
    a, b = start_agents(bed, [{"s": key}, {"s": key}])
    seen = a.expect(sees(bed.devices[1].address), SEEN_TIMEOUT_S, "about device 1")
    b.stop()
    gone = a.expect(lambda m: m["event"] == "gone", SEEN_TIMEOUT_S, "device 1 leaving")
    assert gone["instance"] == seen["instance"]


def test_clocks_an_hour_apart_still_match_and_further_apart_do_not(
    netns_bed: Callable[[int], TestBed],
) -> None:
    bed = netns_bed(3)
    key = os.urandom(32)
    a, _, _ = start_agents(bed, [{"s": key}] * 3, skew_hours=[0.0, 1.0, 2.5])
    near = a.expect(sees(bed.devices[1].address), SEEN_TIMEOUT_S, "the device 1 h ahead")
    far = a.expect(sees(bed.devices[2].address), SEEN_TIMEOUT_S, "the device 2.5 h ahead")
    assert near["shares"] == ["s"]
    assert far["shares"] == []


def test_a_device_that_changes_address_is_seen_at_the_new_one(
    netns_bed: Callable[[int], TestBed],
) -> None:
    bed = netns_bed(2)
    key = os.urandom(32)
    moving = bed.devices[1]
    new_address = "10.77.0.101"
    run(["ip", "-n", moving.netns, "addr", "add", f"{new_address}/24", "dev", moving.interface])
    a, b = start_agents(
        bed,
        [{"s": key}, {"s": key}],
        per_device=[[], ["--move-to", new_address, "--move-after", "1.5"]],
    )
    before = a.expect(sees(moving.address), SEEN_TIMEOUT_S, "the old address")
    b.expect(lambda m: m["event"] == "moved", SEEN_TIMEOUT_S, "the move")
    after = a.expect(sees(new_address), SEEN_TIMEOUT_S, "the new address")
    assert after["instance"] == before["instance"]
    assert after["shares"] == ["s"]
    # And the device that moved still hears the others on its new address.
    b.expect(sees(bed.devices[0].address), SEEN_TIMEOUT_S, "device 0")
