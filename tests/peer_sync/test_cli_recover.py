"""`drift recover`: every device lost, the recovery code alone makes a new one of the same user."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from peer.cli import Env, main
from peer.device.home import Home
from peer.errors import ExitCode
from protocol.recovery import new_recovery_code
from tests.peer_sync.test_cli import drift, relay_url  # noqa: F401  (the fixture)


def recover(home: Path, url: str, code: str, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Env(vars={}, out=out, err=err, inp=io.StringIO(code + "\n"))
    status = main(["--home", str(home), *extra, "recover", url, "--name", "new-laptop"], env)
    return status, out.getvalue(), err.getvalue()


def test_recover_with_the_code_alone(tmp_path: Path, relay_url: str) -> None:  # noqa: F811
    laptop, fresh = tmp_path / "laptop", tmp_path / "fresh"
    status, out, _ = drift(laptop, "--json", "init", "--name", "laptop")
    assert status == ExitCode.OK
    made = json.loads(out)
    assert drift(laptop, "relay", "login", relay_url)[0] == ExitCode.OK
    assert not (laptop / "recovery.key").exists()  # handed to the relay, like the blob
    shutil.rmtree(laptop)  # every device lost

    # A mistyped code is caught before anything is asked of the relay.
    status, _, err = recover(fresh, relay_url, "not-a-code")
    assert status == ExitCode.USAGE, err
    # Someone else's (valid) code finds no account, and leaves no identity behind.
    status, _, err = recover(fresh, relay_url, new_recovery_code())
    assert status == ExitCode.RELAY, err
    assert "no account registered this recovery code" in err
    assert not Home(fresh).device_key.exists()
    assert not Home(fresh).user_key.exists()

    status, out, err = recover(fresh, relay_url, made["recovery_code"], "--json")
    assert status == ExitCode.OK, err
    back = json.loads(out)
    assert back["user_code"] == made["user_code"]
    assert back["device_id"] != made["device_id"]
    # Signed in as the same user: it can create shares at once.
    status, _, err = drift(fresh, "share", "create", str(tmp_path / "Photos"))
    assert status == ExitCode.OK, err

    # Recovering over a device that exists is refused; nothing is overwritten.
    status, _, err = recover(fresh, relay_url, made["recovery_code"])
    assert status != ExitCode.OK
    assert "already holds a device identity" in err
