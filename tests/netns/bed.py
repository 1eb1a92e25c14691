"""A switched test network of namespaces: one bridge, one namespace per device.

Layout for a bed with run tag ``dsnet-<pid>-<n>``:

    namespace <tag>-sw : bridge ``br0`` (multicast snooping off, so mDNS floods every port),
                         ports ``p0``, ``p1``, … (the switch ends of the veth pairs)
    namespace <tag>-d0 : ``lo`` up, ``eth0`` = 10.77.0.1/24, route 224.0.0.0/4 via eth0
    namespace <tag>-d1 : ``eth0`` = 10.77.0.2/24, …

Nothing is created in the host's namespace: the bridge lives in its own namespace, so the host's
interfaces, routes and firewall never see the test traffic, and deleting the namespaces removes
every link. Names carry the creating process id; ``remove_stale`` deletes beds whose creator is
gone and leaves beds of runs still alive alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import re
import subprocess
from collections.abc import Sequence

from tests.netns.process import NsProcess

PREFIX = "dsnet"
SUBNET = "10.77.0"
PREFIX_LEN = 24
_counter = itertools.count()
_STALE = re.compile(rf"^{PREFIX}-(\d+)-\d+-(?:sw|d\d+)$")


class NetnsError(RuntimeError):
    """An ``ip`` or ``tc`` command failed while building or changing a bed."""


class ShapingUnsupported(NetnsError):
    """The kernel lacks the queueing discipline a shaping request needs (e.g. sch_netem)."""


def run(argv: Sequence[str], *, check: bool = True, stdin: str | None = None) -> str:
    done = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if check and done.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
    return done.stdout


def _batch(netns: str, commands: Sequence[str]) -> None:
    """Several ``ip`` commands in one namespace with one process."""
    run(["ip", "-n", netns, "-batch", "-"], stdin="\n".join(commands) + "\n")


def list_namespaces() -> list[str]:
    # `ip netns list` prints "name (id: N)" for namespaces with an id assigned.
    return [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()]


def delete_namespace(netns: str) -> None:
    """Kill whatever still runs inside, then delete the namespace (and its links with it)."""
    pids = run(["ip", "netns", "pids", netns], check=False).split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)
    run(["ip", "netns", "del", netns], check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Delete beds left by runs that died before their teardown; the names removed."""
    removed = []
    for netns in list_namespaces():
        match = _STALE.match(netns)
        if match and not _alive(int(match.group(1))):
            delete_namespace(netns)
            removed.append(netns)
    return removed


@dataclasses.dataclass(frozen=True)
class Device:
    index: int
    netns: str
    address: str
    switch_port: str
    interface: str = "eth0"


class TestBed:
    """Build with ``TestBed.create(n)``; always ``teardown()`` (the fixture does)."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.switch = f"{tag}-sw"
        self.devices: list[Device] = []
        self._namespaces: list[str] = []
        self._processes: list[NsProcess] = []

    @classmethod
    def create(cls, count: int) -> TestBed:
        if not 1 <= count <= 200:
            raise ValueError("a bed has between 1 and 200 devices")
        bed = cls(f"{PREFIX}-{os.getpid()}-{next(_counter)}")
        try:
            bed._build(count)
        except BaseException:
            bed.teardown()
            raise
        return bed

    def _add_namespace(self, netns: str) -> None:
        run(["ip", "netns", "add", netns])
        self._namespaces.append(netns)

    def _build(self, count: int) -> None:
        self._add_namespace(self.switch)
        _batch(
            self.switch,
            [
                "link set lo up",
                # Without a querier, a snooping bridge may stop flooding multicast; mDNS needs it.
                "link add br0 type bridge mcast_snooping 0 stp_state 0",
                "link set br0 up",
            ],
        )
        for index in range(count):
            device = Device(
                index=index,
                netns=f"{self.tag}-d{index}",
                address=f"{SUBNET}.{index + 1}",
                switch_port=f"p{index}",
            )
            self._add_namespace(device.netns)
            veth = ["veth", "peer", "name", device.switch_port, "netns", self.switch]
            run(["ip", "-n", device.netns, "link", "add", device.interface, "type", *veth])
            _batch(self.switch, [f"link set {device.switch_port} master br0 up"])
            _batch(
                device.netns,
                [
                    "link set lo up",
                    f"addr add {device.address}/{PREFIX_LEN} dev {device.interface}",
                    f"link set {device.interface} up",
                    f"route add 224.0.0.0/4 dev {device.interface}",
                ],
            )
            self.devices.append(device)

    def _link_ends(self, device: Device) -> tuple[tuple[str, str], tuple[str, str]]:
        """(namespace, interface) of both ends of the device's cable."""
        return (device.netns, device.interface), (self.switch, device.switch_port)

    def link_down(self, device: Device) -> None:
        """Pull the device's cable: its switch port goes down, its own addresses and routes stay."""
        run(["ip", "-n", self.switch, "link", "set", device.switch_port, "down"])

    def link_up(self, device: Device) -> None:
        run(["ip", "-n", self.switch, "link", "set", device.switch_port, "up"])

    def shape(
        self,
        device: Device,
        *,
        rate_kbit: int | None = None,
        delay_ms: float | None = None,
        loss_pct: float | None = None,
    ) -> None:
        """Shape traffic both ways on the device's link: tbf for rate, netem for delay and loss.

        Applied on the device's ``eth0`` (what it sends) and its switch port (what it receives).
        """
        for netns, interface in self._link_ends(device):
            self._shape_one(netns, interface, rate_kbit, delay_ms, loss_pct)

    def _shape_one(
        self,
        netns: str,
        interface: str,
        rate_kbit: int | None,
        delay_ms: float | None,
        loss_pct: float | None,
    ) -> None:
        tc = ["tc", "-n", netns, "qdisc"]
        run([*tc, "del", "dev", interface, "root"], check=False)
        parent = ["root"]
        if delay_ms is not None or loss_pct is not None:
            netem = ["netem"]
            if delay_ms is not None:
                netem += ["delay", f"{delay_ms}ms"]
            if loss_pct is not None:
                netem += ["loss", f"{loss_pct}%"]
            try:
                run([*tc, "add", "dev", interface, "root", "handle", "1:", *netem])
            except NetnsError as exc:
                raise ShapingUnsupported(f"netem unavailable in this kernel: {exc}") from exc
            parent = ["parent", "1:1"]
        if rate_kbit is not None:
            # A burst of ~10 ms at the rate (at least one full frame) keeps throughput smooth.
            burst = max(rate_kbit * 1000 // 8 // 100, 3000)
            tbf = ["tbf", "rate", f"{rate_kbit}kbit", "burst", str(burst), "latency", "200ms"]
            run([*tc, "add", "dev", interface, *parent, "handle", "10:", *tbf])

    def clear_shaping(self, device: Device) -> None:
        for netns, interface in self._link_ends(device):
            run(["tc", "-n", netns, "qdisc", "del", "dev", interface, "root"], check=False)

    def spawn(self, device: Device, module: str, *args: str) -> NsProcess:
        """Run ``python -m module args`` inside the device's namespace; stopped at teardown."""
        process = NsProcess(device.netns, module, args)
        self._processes.append(process)
        return process

    def teardown(self) -> None:
        """Stop every process, delete every namespace; safe to call twice and after failures."""
        for process in self._processes:
            with contextlib.suppress(Exception):
                process.stop()
        self._processes.clear()
        for netns in reversed(self._namespaces):
            delete_namespace(netns)
        self._namespaces.clear()
