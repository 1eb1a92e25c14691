"""TLS transport and chunk fetching across namespaces, through a link that is cut and restored."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from peer.lan.tls import TlsIdentity
from tests.netns import NsProcess, TestBed

pytestmark = pytest.mark.netns

AGENT = "tests.lan.agent_transfer"
PORT = 4300


def start_pair(
    bed: TestBed, chunks: int, chunk_kib: int, share_key: bytes | None = None
) -> tuple[NsProcess, Callable[[], NsProcess]]:
    """A serving and a fetching agent; with ``share_key`` the fetcher finds the server by mDNS
    (the server then listens on a port picked at random, so only discovery can tell it)."""
    server_seed, client_seed = os.urandom(32), os.urandom(32)
    server_key = TlsIdentity.from_seed(server_seed).public_key
    client_key = TlsIdentity.from_seed(client_seed).public_key
    common = ["--chunks", str(chunks), "--chunk-kib", str(chunk_kib), "--content-seed", "7"]
    server_device, client_device = bed.devices
    server = bed.spawn(
        server_device,
        AGENT,
        "serve",
        "--listen",
        server_device.address,
        "--port",
        "0" if share_key else str(PORT),
        "--seed",
        server_seed.hex(),
        "--peer-key",
        client_key.hex(),
        *common,
        *(["--share-key", share_key.hex()] if share_key else []),
    )
    server.expect(lambda m: m["event"] == "listening", 10, "listening")
    where = (
        ["--listen", client_device.address, "--share-key", share_key.hex()]
        if share_key
        else ["--connect", f"{server_device.address}:{PORT}"]
    )

    def start_client() -> NsProcess:
        return bed.spawn(
            client_device,
            AGENT,
            "fetch",
            *where,
            "--seed",
            client_seed.hex(),
            "--peer-key",
            server_key.hex(),
            *common,
        )

    return server, start_client


def test_unconfigured_devices_discover_each_other_and_fetch_over_tls(
    netns_bed: Callable[[int], TestBed],
) -> None:
    bed = netns_bed(2)
    server, start_client = start_pair(bed, chunks=6, chunk_kib=64, share_key=os.urandom(32))
    port = server.expect(lambda m: m["event"] == "listening", 1, "listening")["port"]
    client = start_client()
    found = client.expect(lambda m: m["event"] == "discovered", 20, "the server by mDNS")
    assert found == {"event": "discovered", "address": bed.devices[0].address, "port": port}
    done = client.expect(lambda m: m["event"] == "done", 15, "the fetch to finish")
    assert done["complete"] is True
    assert done["per_session"] == [6]
    assert client.wait(5) == 0


def test_cut_link_mid_transfer_resumes_with_the_chunks_not_yet_received(
    netns_bed: Callable[[int], TestBed],
) -> None:
    bed = netns_bed(2)
    chunks, chunk_kib = 24, 128
    server, start_client = start_pair(bed, chunks=chunks, chunk_kib=chunk_kib)
    # ~3 MiB at 12 Mbit/s: about two seconds of transfer, so the cut lands mid-stream.
    bed.shape(bed.devices[1], rate_kbit=12_000)
    client = start_client()
    client.expect(lambda m: m["event"] == "chunk" and m["received"] >= 4, 15, "4 chunks")
    bed.link_down(bed.devices[1])

    def received() -> int:
        return max(m["received"] for m in client.drain() if m["event"] == "chunk")

    time.sleep(2.0)  # longer than the read timeout: the session must break, not just pause
    stalled_at = received()
    assert stalled_at < chunks, "the transfer finished before the link was cut"
    time.sleep(0.5)
    assert received() == stalled_at, "chunks arrived while the link was down"
    bed.link_up(bed.devices[1])
    done = client.expect(lambda m: m["event"] == "done", 30, "the fetch to finish")
    assert done["complete"] is True
    sessions = done["per_session"]
    assert len(sessions) >= 2, f"no reconnect happened: {sessions}"
    # Every chunk arrived exactly once: nothing received before the cut was fetched again.
    assert sum(sessions) == chunks
    # The first session ended during the cut; everything after came from the resumed one(s).
    assert sessions[0] == stalled_at
    assert done["bytes"] == chunks * chunk_kib * 1024
    assert client.wait(5) == 0
    server.expect(lambda m: m["event"] == "served" and m["session"] >= 2, 10, "a second session")
