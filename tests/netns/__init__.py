"""Network-namespace test bed: a bridge and one namespace per device, for real mDNS and TCP.

    from tests.netns import TestBed, require_netns

    require_netns()                 # skip (or, with CI=true, fail) where namespaces cannot be made
    bed = TestBed.create(3)         # bridge + 3 devices at 10.77.0.1-3, inside namespaces only
    agent = bed.spawn(bed.devices[0], "tests.lan.agent_discovery", "--key", "…")
    agent.expect(lambda m: m["event"] == "seen", timeout_s=10, what="a peer")
    bed.link_down(bed.devices[0]); bed.link_up(bed.devices[0])
    bed.shape(bed.devices[1], rate_kbit=20_000)
    bed.teardown()                  # processes stopped, namespaces (and the bridge) deleted

The ``netns_bed`` fixture in ``tests.netns.fixtures`` does the create/teardown pairing.
"""

from tests.netns.availability import in_ci, netns_unavailable_reason, require_netns
from tests.netns.bed import (
    Device,
    NetnsError,
    ShapingUnsupported,
    TestBed,
    remove_stale,
)
from tests.netns.process import AgentFailed, NsProcess

__all__ = [
    "AgentFailed",
    "Device",
    "NetnsError",
    "NsProcess",
    "ShapingUnsupported",
    "TestBed",
    "in_ci",
    "netns_unavailable_reason",
    "remove_stale",
    "require_netns",
]
