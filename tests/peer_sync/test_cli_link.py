"""`drift device link` / `drift device add CODE`: a new device joins with a short one-time code.

Both sides run the real CLI against a real relay on loopback, concurrently: the holder's
`drift device link` in a thread (it shows the code, then waits), the new device's
`drift device add` in the test. A mistyped code, a used code, an expired rendezvous and a
tampered grant each end with a clear error and no certificate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from peer.cli import Env, main
from peer.device.home import Home
from peer.device.identity import load_device, load_user
from peer.errors import ExitCode
from peer.remote.http import HttpRelayLink
from peer.remote.rendezvous import RendezvousClient
from protocol.keys import DeviceIdentity
from protocol.linking import (
    LinkOffer,
    LinkRequest,
    link_secrets,
    make_link_request,
    new_link_code,
)
from seams import SystemClock
from seams.random import OsRandom
from tests.peer_sync.harness import running_relay
from tests.peer_sync.test_cli import drift

CODE = re.compile(r"drift device add (\S+) --relay (\S+)")


@contextmanager
def relay_in_thread(data_dir: Path, **overrides: object) -> Iterator[str]:
    """A relay on its own loop in a thread (the CLI runs its own loops with asyncio.run)."""
    loop = asyncio.new_event_loop()
    ready: list[str] = []
    stop = asyncio.Event()

    async def serve() -> None:
        async with running_relay(data_dir, **overrides) as url:
            ready.append(url)
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    while not ready:
        thread.join(0.05)
    try:
        yield ready[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


@pytest.fixture
def relay_url(tmp_path: Path) -> Iterator[str]:
    with relay_in_thread(tmp_path / "relay") as url:
        yield url


class Holder:
    """`drift device link` running in a thread; its output read while it waits."""

    def __init__(self, home: Path, *extra: str) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.status: int | None = None
        argv = ["--home", str(home), *extra, "device", "link"]

        def run() -> None:
            self.status = main(argv, Env(vars={}, out=self.out, err=self.err))

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def command(self, timeout_s: float = 20) -> tuple[str, str]:
        """The code and relay URL the holder shows."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = CODE.search(self.out.getvalue() + self.err.getvalue())
            if found:
                return found.group(1), found.group(2)
            assert self.thread.is_alive(), self.err.getvalue()
            time.sleep(0.05)
        raise AssertionError("the holder never showed a code: " + self.err.getvalue())

    def finish(self, timeout_s: float = 30) -> tuple[int, str, str]:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "drift device link did not finish"
        assert self.status is not None
        return self.status, self.out.getvalue(), self.err.getvalue()


def _laptop(tmp_path: Path, url: str) -> tuple[Path, dict[str, str]]:
    laptop = tmp_path / "laptop"
    status, out, err = drift(laptop, "--json", "init", "--name", "laptop")
    assert status == ExitCode.OK, err
    assert drift(laptop, "relay", "login", url)[0] == ExitCode.OK
    return laptop, json.loads(out)


def test_a_new_device_links_with_the_short_code(tmp_path: Path, relay_url: str) -> None:
    laptop, made = _laptop(tmp_path, relay_url)
    holder = Holder(laptop)
    code, shown_url = holder.command()
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", code)
    assert shown_url == relay_url

    phone = tmp_path / "phone"
    status, out, err = drift(phone, "--json", "device", "add", code, "--relay", shown_url,
                             "--name", "phone")  # fmt: skip
    assert status == ExitCode.OK, err
    added = json.loads(out)
    assert added["user_code"] == made["user_code"]
    status, hout, herr = holder.finish()
    assert status == ExitCode.OK, herr
    assert f"linked device {added['device_id']} (phone)" in hout

    # The phone is one of the user's devices, signed in, without the user key.
    assert load_user(Home(phone)) is None
    device = load_device(Home(phone), OsRandom())
    assert device.certificate.name == "phone"
    status, out, err = drift(phone, "--json", "device", "list")
    assert status == ExitCode.OK, err
    assert json.loads(out)["user_code"] == made["user_code"]
    # Signed in as the same user: it can create a share at once.
    status, _, err = drift(phone, "share", "create", str(tmp_path / "Notes"))
    assert status == ExitCode.OK, err

    # The code served once: a third device typing it is refused, with nothing installed.
    tablet = tmp_path / "tablet"
    status, _, err = drift(tablet, "device", "add", code, "--relay", shown_url)
    assert status == ExitCode.RELAY
    assert "already used" in err
    assert not Home(tablet).device_cert.exists()


def test_a_mistyped_code_links_nothing_and_the_right_one_still_works(
    tmp_path: Path, relay_url: str
) -> None:
    laptop, _ = _laptop(tmp_path, relay_url)
    holder = Holder(laptop)
    code, url = holder.command()
    phone = tmp_path / "phone"
    # Not a code at all: caught before the relay is asked.
    status, _, err = drift(phone, "device", "add", "ABCD-EFGH", "--relay", url)
    assert status == ExitCode.USAGE, err
    assert "not a link code" in err
    # A well-formed code nobody shows: the relay has no such rendezvous.
    other = new_link_code()
    status, _, err = drift(phone, "device", "add", other, "--relay", url)
    assert status == ExitCode.RELAY
    assert "no device is showing this link code" in err
    assert not Home(phone).device_cert.exists()
    # The holder's code was not spent by the typo; the key made for it is reused.
    status, _, err = drift(phone, "device", "add", code, "--relay", url, "--name", "phone")
    assert status == ExitCode.OK, err
    assert holder.finish()[0] == ExitCode.OK


def test_the_new_device_needs_to_know_the_relay(tmp_path: Path) -> None:
    status, _, err = drift(tmp_path / "phone", "device", "add", new_link_code())
    assert status == ExitCode.USAGE
    assert "--relay URL" in err


def test_an_expired_code_is_refused_on_both_sides(tmp_path: Path) -> None:
    with relay_in_thread(tmp_path / "relay", link_ttl_s=1) as url:
        laptop, _ = _laptop(tmp_path, url)
        holder = Holder(laptop)
        code, _ = holder.command()
        time.sleep(1.3)
        phone = tmp_path / "phone"
        status, _, err = drift(phone, "device", "add", code, "--relay", url)
        assert status == ExitCode.RELAY
        assert "expired" in err
        assert "drift device link" in err
        assert not Home(phone).device_cert.exists()
        status, _, herr = holder.finish()
        assert status == ExitCode.RELAY
        assert "expired" in herr


def test_a_tampered_grant_is_detected_and_nothing_installed(tmp_path: Path, relay_url: str) -> None:
    """The relay (played by the test) swaps the certificate in the grant for one of another
    user's: the MAC no longer holds, the new device refuses it."""
    laptop, _ = _laptop(tmp_path, relay_url)
    stranger, _ = _laptop(tmp_path / "x", relay_url)
    offer = LinkOffer.create(int(time.time() * 1000))
    phone = tmp_path / "phone"
    result: list[tuple[int, str, str]] = []
    adder = threading.Thread(
        target=lambda: result.append(
            drift(phone, "device", "add", offer.code, "--relay", relay_url)
        ),
        daemon=True,
    )

    async def play_holder() -> None:
        home = Home(laptop)
        link = HttpRelayLink(
            relay_url, load_device(home, OsRandom()), clock=SystemClock(), rng=OsRandom()
        )
        try:
            await link.open_link(offer.rendezvous)
            adder.start()
            request = None
            while request is None:
                request = await link.wait_link_request(offer.rendezvous, 10)
            user = load_user(home)
            assert user is not None
            grant = offer.accept(LinkRequest.decode(request), user, int(time.time() * 1000))
            other_user = load_user(Home(stranger))
            assert other_user is not None
            req = LinkRequest.decode(request)
            forged = dataclasses.replace(
                grant, certificate=other_user.certify(req.device_key, "phone", req.time_ms)
            )
            await link.answer_link(offer.rendezvous, grant=forged.encode())
        finally:
            await link.close()

    asyncio.run(play_holder())
    adder.join(30)
    assert result, "drift device add did not finish"
    status, _, err = result[0]
    assert status == ExitCode.FATAL
    assert "does not check out" in err
    assert not Home(phone).device_cert.exists()


def test_a_linked_device_joins_its_users_share_with_keys_from_the_mailbox(
    tmp_path: Path, relay_url: str
) -> None:
    laptop, _ = _laptop(tmp_path, relay_url)
    photos = tmp_path / "Photos"
    status, out, err = drift(laptop, "--json", "share", "create", str(photos))
    assert status == ExitCode.OK, err
    share = json.loads(out)["share"]
    (photos / "cat.txt").write_text("meow")
    assert drift(laptop, "run", "--once")[0] == ExitCode.OK

    holder = Holder(laptop)
    code, url = holder.command()
    phone = tmp_path / "phone"
    status, out, err = drift(phone, "--json", "device", "add", code, "--relay", url)
    assert status == ExitCode.OK, err
    assert holder.finish()[0] == ExitCode.OK
    # The relay lists the user's shares to the new device (ids only: names are encrypted).
    assert {"share": share, "role": "owner"} in json.loads(out)["shares"]

    # No owner device has looked since the phone appeared: no key for it yet, and it says why.
    phone_photos = tmp_path / "phone-Photos"
    status, _, err = drift(phone, "share", "join", share, str(phone_photos))
    assert status != ExitCode.OK
    assert "no key for the share yet" in err
    # An owner's pass wraps the share's keys for the new device; then it joins and syncs.
    assert drift(laptop, "run", "--once")[0] == ExitCode.OK
    status, _, err = drift(phone, "share", "join", share, str(phone_photos))
    assert status == ExitCode.OK, err
    status, _, err = drift(phone, "run", "--once")
    assert status == ExitCode.OK, err
    assert (phone_photos / "cat.txt").read_text() == "meow"
    # And it writes back: the laptop gets the phone's file.
    (phone_photos / "dog.txt").write_text("woof")
    assert drift(phone, "run", "--once")[0] == ExitCode.OK
    assert drift(laptop, "run", "--once")[0] == ExitCode.OK
    assert (photos / "dog.txt").read_text() == "woof"


def test_a_substituted_request_is_refused_by_the_holder_and_spends_the_code(
    tmp_path: Path, relay_url: str
) -> None:
    """A relay (played by the test) posts its own key at the rendezvous without the code: the
    holder certifies nothing, says so, and the code is spent for everyone."""
    laptop, _ = _laptop(tmp_path, relay_url)
    holder = Holder(laptop)
    code, url = holder.command()
    secrets = link_secrets(code)
    forged = make_link_request(
        dataclasses.replace(secrets, mac_key=bytes(32)),
        DeviceIdentity.generate(),
        "evil",
        int(time.time() * 1000),
    )

    async def post_forged() -> None:
        async with aiohttp.ClientSession() as session:
            await RendezvousClient(session, url, secrets.rendezvous).post_request(forged.encode())

    asyncio.run(post_forged())
    status, _, herr = holder.finish()
    assert status == ExitCode.FATAL
    assert "not made with this code" in herr
    assert "no device was linked" in herr
    phone = tmp_path / "phone"
    status, _, err = drift(phone, "device", "add", code, "--relay", url)
    assert status == ExitCode.RELAY
    assert "already used" in err
    assert not Home(phone).device_cert.exists()
