"""`make demo`: two people and three devices keep a folder in sync through a relay on loopback.

Everything a user would type is a real `drift` command (run in this process with its own
``--home``); the relay is a real `drift relay serve` process (SQLite + a block directory) on a
free loopback port. The demo shows a share, an invite, a second device of the same person, edits
on every device, a conflict, a move, a delete and a restore, then each folder and each device's
`drift status`. It stops what it started and prints where everything is.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from peer.cli import Env
from peer.cli import main as drift_main
from peer.errors import ExitCode


class DemoFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Device:
    def __init__(self, out: Path, name: str, verbose: bool) -> None:
        self.name = name
        self.home = out / "homes" / name
        self.folder = out / "folders" / name
        self.verbose = verbose

    def drift(self, *argv: str, ok: tuple[int, ...] = (ExitCode.OK,)) -> str:
        out, err = io.StringIO(), io.StringIO()
        code = drift_main(["--home", str(self.home), *argv], Env(vars={}, out=out, err=err))
        if self.verbose or code not in ok:
            print(f"   [{self.name}] $ drift {' '.join(argv)}\n{out.getvalue()}{err.getvalue()}")
        if code not in ok:
            raise DemoFailed(f"`drift {' '.join(argv)}` on {self.name} exited with {code}")
        return out.getvalue()

    def sync(self) -> None:
        self.drift("run", "--once", ok=(ExitCode.OK, ExitCode.FILE_ERRORS))

    def show(self) -> None:
        print(f"   {self.name}: {self.folder}")
        for path in sorted(self.folder.rglob("*")):
            rel = path.relative_to(self.folder).as_posix()
            if rel.startswith(".drift"):
                continue
            if path.is_dir():
                print(f"      {rel}/")
            else:
                print(f"      {rel}  ({path.stat().st_size} B) {path.read_bytes()[:40]!r}")


def start_relay(out: Path, port: int) -> subprocess.Popen[bytes]:
    log = open(out / "relay.log", "wb")  # noqa: SIM115 - handed to the child, closed with it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relay",
            "serve",
            "--data-dir",
            str(out / "relay"),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoFailed(f"the relay exited at start; see {out / 'relay.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise DemoFailed("the relay did not become healthy in 30 s")


def _word(text: str, prefix: str) -> str:
    """The code in a command's output (the word that starts with ``prefix``)."""
    for word in text.split():
        if word.startswith(prefix):
            return word
    raise DemoFailed(f"no {prefix} code in the output: {text!r}")


def everyone_syncs(devices: list[Device], rounds: int = 2) -> None:
    for _ in range(rounds):
        for device in devices:
            device.sync()


def run(out: Path, verbose: bool) -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"1. starting a relay on {url} (SQLite + block directory in {out / 'relay'})")
    relay = start_relay(out, port)
    try:
        alice, bob, phone = (
            Device(out, n, verbose) for n in ("alice-laptop", "bob-pc", "alice-phone")
        )
        devices = [alice, bob, phone]
        print("2. alice and bob create their identities; alice links her phone")
        alice.drift("init", "--name", alice.name)
        bob_user = json.loads(bob.drift("--json", "init", "--name", bob.name))["user_code"]
        request = _word(phone.drift("device", "add", "--name", phone.name), "drift-device:")
        cert = _word(alice.drift("device", "link", request), "drift-cert:")
        phone.drift("device", "add", cert)
        alice_user = json.loads(alice.drift("--json", "device", "list"))["user_code"]
        for device in devices:
            device.drift("relay", "login", url)

        print("3. alice shares a folder with bob (editor) and with her phone")
        alice.folder.mkdir(parents=True)
        (alice.folder / "plan.txt").write_text("Trip plan\n- book train\n")
        (alice.folder / "report.txt").write_text("Quarterly report, draft\n")
        (alice.folder / "photos").mkdir()
        (alice.folder / "photos" / "beach.raw").write_bytes(os.urandom(300_000))
        alice.drift("share", "create", str(alice.folder), "--name", "Trip")
        for user, device in ((bob_user, bob), (alice_user, phone)):
            code = json.loads(alice.drift("--json", "share", "invite", "Trip", user))["invite"]
            device.drift("share", "join", code, str(device.folder))
        everyone_syncs(devices)

        print("4. edits on all three devices: a move, a new file, and a conflict on plan.txt")
        (phone.folder / "photos" / "sunset.raw").write_bytes(os.urandom(120_000))
        (bob.folder / "archive").mkdir()
        os.rename(bob.folder / "photos" / "beach.raw", bob.folder / "archive" / "beach.raw")
        (alice.folder / "plan.txt").write_text("Trip plan\n- book train\n- alice: hotel\n")
        (bob.folder / "plan.txt").write_text("Trip plan\n- book train\n- bob: car\n")
        everyone_syncs(devices, rounds=3)

        print("5. bob deletes report.txt; alice restores it as it was a moment ago")
        before = time.time()
        time.sleep(0.05)
        (bob.folder / "report.txt").unlink()
        everyone_syncs(devices)
        alice.drift("restore", str(alice.folder / "report.txt"), "--at", f"{before:.3f}")
        everyone_syncs(devices)

        print("6. the folders now")
        for device in devices:
            device.show()
        print("7. `drift status` of each device")
        for device in devices:
            print(f"   --- {device.name}")
            print(
                "      "
                + device.drift("status", ok=(ExitCode.OK, ExitCode.FILE_ERRORS)).replace(
                    "\n", "\n      "
                )
            )
        pictures = [
            {
                p.relative_to(d.folder).as_posix(): p.read_bytes()
                for p in d.folder.rglob("*")
                if p.is_file() and not p.relative_to(d.folder).as_posix().startswith(".drift")
            }
            for d in devices
        ]
        same = pictures[0] == pictures[1] == pictures[2]
        conflicts = [p for p in pictures[0] if "conflicted copy" in p]
        print(f"8. all three folders identical: {same}; conflicted copies: {conflicts}")
        if not same or len(conflicts) != 1 or "report.txt" not in pictures[0]:
            raise DemoFailed("the devices did not converge as expected")
    finally:
        relay.terminate()
        try:
            relay.wait(15)
        except subprocess.TimeoutExpired:
            relay.kill()
    print(
        f"done. folders: {out / 'folders'}  device homes: {out / 'homes'}  relay: {out / 'relay'}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="drift demo",
        description="Two people, three devices and a relay on loopback: share, edit, conflict, "
        "move, delete and restore, then show every folder and status.",
        epilog="example: drift demo --out /tmp/drift-demo",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("demo-out/sync"),
        help="default ./demo-out/sync (emptied first)",
    )
    parser.add_argument("--verbose", action="store_true", help="print every drift command")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        return run(out, args.verbose)
    except DemoFailed as exc:
        print(f"drift demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
