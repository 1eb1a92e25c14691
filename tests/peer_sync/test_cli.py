"""The `drift` commands end to end: two users, a share, sync, status, history, restore."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peer.cli import Env, main
from peer.device.config import DeviceConfig
from peer.device.home import Home
from peer.errors import ExitCode
from tests.peer_sync.harness import running_relay


@pytest.fixture
def relay_url(tmp_path: Path) -> Iterator[str]:
    """A relay on its own loop in a thread (the CLI runs its own loops with asyncio.run)."""
    loop = asyncio.new_event_loop()
    ready: list[str] = []
    stop = asyncio.Event()

    async def serve() -> None:
        async with running_relay(tmp_path / "relay") as url:
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


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drift(home: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--home", str(home), *argv], Env(vars={}, out=out, err=err))
    return code, out.getvalue(), err.getvalue()


def test_cli_flow(tmp_path: Path, relay_url: str) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    code, out, _ = drift(alice, "--json", "init", "--name", "alice-laptop")
    assert code == ExitCode.OK
    assert json.loads(out)["recovery_code"]
    code, out, _ = drift(bob, "init", "--json", "--name", "bob-pc")
    bob_user = json.loads(out)["user_code"]
    for home in (alice, bob):
        assert drift(home, "relay", "login", relay_url)[0] == ExitCode.OK

    folder_a, folder_b = tmp_path / "A", tmp_path / "B"
    code, out, err = drift(alice, "share", "create", str(folder_a), "--name", "Docs")
    assert code == ExitCode.OK, err
    code, out, err = drift(alice, "--json", "share", "invite", "Docs", bob_user, "--role", "editor")
    assert code == ExitCode.OK, err
    invite = json.loads(out)["invite"]
    assert drift(bob, "share", "join", invite, str(folder_b))[0] == ExitCode.OK

    (folder_a / "hello.txt").write_bytes(b"v1")
    terminal = Terminal()
    code = main(["--home", str(alice), "run", "--once"], Env(vars={}, out=terminal, err=terminal))
    assert code == ExitCode.OK
    assert "Docs upload" in terminal.getvalue()  # a progress bar, on a terminal only
    assert drift(bob, "run", "--once")[0] == ExitCode.OK
    assert (folder_b / "hello.txt").read_bytes() == b"v1"
    (folder_b / "hello.txt").write_bytes(b"v2 by bob")
    drift(bob, "run", "--once")
    drift(alice, "run", "--once")
    assert (folder_a / "hello.txt").read_bytes() == b"v2 by bob"

    code, out, _ = drift(alice, "--json", "history", str(folder_a / "hello.txt"))
    assert [v["size"] for v in json.loads(out)] == [2, 9]
    target = tmp_path / "old.txt"
    code, out, err = drift(
        alice, "restore", str(folder_a / "hello.txt"), "--version", "1", "--to", str(target)
    )
    assert code == ExitCode.OK, err
    assert target.read_bytes() == b"v1"

    code, out, _ = drift(alice, "--json", "status")
    status = json.loads(out)
    assert status["shares"][0]["files"] == 1
    assert status["shares"][0]["state"] == "idle"
    assert drift(alice, "conflicts")[0] == ExitCode.OK

    assert drift(alice, "pause")[0] == ExitCode.OK
    code, out, _ = drift(alice, "--json", "status")
    assert json.loads(out)["shares"][0]["state"] == "paused"
    assert drift(alice, "resume")[0] == ExitCode.OK


def test_cli_errors_say_what_to_do(tmp_path: Path) -> None:
    code, _, err = drift(tmp_path / "nobody", "status")
    assert code == ExitCode.NOT_INITIALIZED
    assert "drift init" in err
    code, _, _ = drift(tmp_path / "nobody", "share", "frobnicate")
    assert code == ExitCode.USAGE


def _code(text: str, prefix: str) -> str:
    return next(word for word in text.split() if word.startswith(prefix))


def test_cli_link_a_second_device_then_revoke_it(tmp_path: Path, relay_url: str) -> None:
    laptop, phone = tmp_path / "laptop", tmp_path / "phone"
    assert drift(laptop, "init", "--name", "laptop")[0] == ExitCode.OK
    assert drift(laptop, "relay", "login", relay_url)[0] == ExitCode.OK
    code, out, _ = drift(phone, "device", "add", "--name", "phone")
    assert code == ExitCode.OK
    code, out, err = drift(laptop, "device", "link", _code(out, "drift-device:"))
    assert code == ExitCode.OK, err
    assert drift(phone, "device", "add", _code(out, "drift-cert:"))[0] == ExitCode.OK
    assert drift(phone, "relay", "login", relay_url)[0] == ExitCode.OK
    laptop_ids = json.loads(drift(laptop, "--json", "device", "list")[1])
    phone_ids = json.loads(drift(phone, "--json", "device", "list")[1])
    assert laptop_ids["user_code"] == phone_ids["user_code"]

    assert drift(laptop, "device", "revoke", phone_ids["device_id"])[0] == ExitCode.OK
    code, _, err = drift(phone, "share", "create", str(tmp_path / "P"))
    assert code == ExitCode.RELAY
    assert "revoked" in err


def test_cli_daemon_stops_cleanly_on_sigint(tmp_path: Path, relay_url: str) -> None:
    home = tmp_path / "h"
    assert drift(home, "init", "--name", "box")[0] == ExitCode.OK
    assert drift(home, "relay", "login", relay_url)[0] == ExitCode.OK
    assert drift(home, "share", "create", str(tmp_path / "F"))[0] == ExitCode.OK
    config = DeviceConfig.load(Home(home).config)
    config.lan_addresses = ["127.0.0.1"]  # LAN peers on (the default), on loopback only
    config.save(Home(home).config)
    proc = subprocess.Popen(
        [sys.executable, "-m", "peer.cli", "--home", str(home), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert "syncing 1 share" in proc.stdout.readline().decode()
        (tmp_path / "F" / "new.txt").write_bytes(b"picked up by the watcher")
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == ExitCode.OK
        assert b"1 change(s) published" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
