"""`drift recover`: every device lost, the recovery code alone makes a new one of the same user."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
from pathlib import Path

from peer.cli import Env, main
from peer.device.home import Home
from peer.device.identity import load_user
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


def _user_wrap_epochs(relay_dir: Path, user_id: bytes) -> set[int]:
    """The epochs the relay's mailbox holds a wrap for, addressed to ``user_id``."""
    with contextlib.closing(sqlite3.connect(relay_dir / "relay.db")) as db:
        rows = db.execute("SELECT epoch FROM key_wraps WHERE recipient = ?", (user_id.hex(),))
        return {int(r[0]) for r in rows}


def test_a_sole_owner_who_lost_every_device_gets_the_shares_back(
    tmp_path: Path,
    relay_url: str,  # noqa: F811
) -> None:
    laptop, bob, fresh = tmp_path / "laptop", tmp_path / "bob", tmp_path / "fresh"
    status, out, _ = drift(laptop, "--json", "init", "--name", "laptop")
    assert status == ExitCode.OK
    made = json.loads(out)
    status, out, _ = drift(bob, "--json", "init", "--name", "bob-pc")
    bob_code = json.loads(out)["user_code"]
    for home in (laptop, bob):
        assert drift(home, "relay", "login", relay_url)[0] == ExitCode.OK
    alice_user, bob_user = load_user(Home(laptop)), load_user(Home(bob))
    assert alice_user is not None
    assert bob_user is not None

    photos = tmp_path / "Photos"
    status, out, err = drift(laptop, "--json", "share", "create", str(photos))
    assert status == ExitCode.OK, err
    share = json.loads(out)["share"]
    (photos / "cat.txt").write_text("meow")
    assert drift(laptop, "run", "--once")[0] == ExitCode.OK
    # A member, then removed: the rotation's new epoch is wrapped for the owner's user, not theirs.
    status, out, err = drift(laptop, "--json", "share", "invite", share, bob_code)
    assert status == ExitCode.OK, err
    status, _, err = drift(bob, "share", "join", json.loads(out)["invite"], str(tmp_path / "B"))
    assert status == ExitCode.OK, err
    assert _user_wrap_epochs(tmp_path / "relay", bob_user.user_id) == {0}
    status, _, err = drift(laptop, "share", "remove-member", share, bob_code)
    assert status == ExitCode.OK, err
    assert _user_wrap_epochs(tmp_path / "relay", alice_user.user_id) == {0, 1}
    assert _user_wrap_epochs(tmp_path / "relay", bob_user.user_id) == {0}
    (photos / "dog.txt").write_text("woof")  # sealed under epoch 1
    assert drift(laptop, "run", "--once")[0] == ExitCode.OK

    shutil.rmtree(laptop)  # every device lost, and the folder with it
    shutil.rmtree(photos)
    status, _, err = recover(fresh, relay_url, made["recovery_code"])
    assert status == ExitCode.OK, err
    # No owner device is left to wrap for the new one: the user's own wrap serves.
    back = tmp_path / "Photos-back"
    status, _, err = drift(fresh, "share", "join", share, str(back))
    assert status == ExitCode.OK, err
    status, _, err = drift(fresh, "run", "--once")
    assert status == ExitCode.OK, err
    assert (back / "cat.txt").read_text() == "meow"
    assert (back / "dog.txt").read_text() == "woof"
