"""The namespace test bed itself: isolation, link cuts, shaping, teardown, stale cleanup."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from tests.netns import ShapingUnsupported, TestBed, availability, remove_stale, require_netns
from tests.netns.bed import list_namespaces, run

PROBE = "tests.lan.agent_probe"


def reachable(bed: TestBed, source: int, target: int, port: int, seconds: float) -> bool:
    probe = bed.spawn(
        bed.devices[source],
        PROBE,
        "connect",
        bed.devices[target].address,
        str(port),
        "--seconds",
        str(seconds),
    )
    result = probe.expect(lambda m: m["event"] in {"connected", "unreachable"}, seconds + 5, "")
    return result["event"] == "connected"


@pytest.mark.netns
def test_devices_reach_each_other_only_while_the_link_is_up(
    netns_bed: Callable[[int], TestBed],
) -> None:
    host_links_before = run(["ip", "-o", "link", "show"])
    bed = netns_bed(2)
    assert run(["ip", "-o", "link", "show"]) == host_links_before  # nothing in the host's netns
    assert [d.address for d in bed.devices] == ["10.77.0.1", "10.77.0.2"]
    server = bed.spawn(bed.devices[1], PROBE, "listen", bed.devices[1].address, "4400")
    server.expect(lambda m: m["event"] == "listening", 10, "listening")
    assert reachable(bed, 0, 1, 4400, seconds=3)
    bed.link_down(bed.devices[0])
    assert "state DOWN" in run(["ip", "-n", bed.switch, "link", "show", "p0"])
    assert not reachable(bed, 0, 1, 4400, seconds=0.8)
    bed.link_up(bed.devices[0])
    assert reachable(bed, 0, 1, 4400, seconds=3)


@pytest.mark.netns
def test_shaping_installs_tbf_and_netem_or_says_why_not(
    netns_bed: Callable[[int], TestBed],
) -> None:
    bed = netns_bed(1)
    device = bed.devices[0]
    bed.shape(device, rate_kbit=8000)
    for netns, interface in ((device.netns, "eth0"), (bed.switch, "p0")):
        assert "tbf" in run(["tc", "-n", netns, "qdisc", "show", "dev", interface])
    # Kernels without sch_netem (some VMs) must say so, not fail obscurely or shape silently.
    try:
        bed.shape(device, delay_ms=20, rate_kbit=8000)
        outcome = run(["tc", "-n", device.netns, "qdisc", "show", "dev", "eth0"])
    except ShapingUnsupported as exc:
        outcome = str(exc)
    assert "netem" in outcome
    bed.clear_shaping(device)
    assert "tbf" not in run(["tc", "-n", device.netns, "qdisc", "show", "dev", "eth0"])


@pytest.mark.netns
def test_teardown_removes_everything_and_stale_beds_are_swept(
    netns_bed: Callable[[int], TestBed],
) -> None:
    live = netns_bed(1)
    exited = subprocess.Popen(["true"])
    exited.wait()
    stale = f"dsnet-{exited.pid}-0-sw"
    run(["ip", "netns", "add", stale])
    removed = remove_stale()
    assert stale in removed
    names = list_namespaces()
    assert stale not in names
    assert live.switch in names  # a bed of a live run is left alone
    bed = TestBed.create(2)
    created = [bed.switch, *(d.netns for d in bed.devices)]
    assert set(created) <= set(list_namespaces())
    bed.teardown()
    bed.teardown()  # idempotent
    assert not set(created) & set(list_namespaces())


def test_without_namespaces_tests_skip_outside_ci_and_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reasons: list[str] = []
    monkeypatch.setattr(availability, "skipped_reasons", reasons)
    monkeypatch.setattr(availability, "netns_unavailable_reason", lambda: "no root here")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no root here"):
        require_netns()
    assert reasons == ["no root here"]
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_netns()
