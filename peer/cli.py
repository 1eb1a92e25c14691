"""`drift` commands of the device: identity, relay login, devices, shares, the daemon, status,
conflicts, history, restore and trash.

``main(argv, env)`` takes the whole command line after ``drift`` (``["share", "create", "~/P"]``)
and returns an :class:`~peer.errors.ExitCode`. Every error says what to do next; tracebacks only
with ``--debug``. ``--json`` gives scripts a stable shape.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from peer.device.config import DeviceConfig
from peer.device.home import Home, resolve_home
from peer.device.identity import (
    init_identity,
    install_certificate,
    load_device,
    load_user,
    new_device_key,
    parse_user_code,
    recover_identity,
    user_code,
)
from peer.device.linking import link_with_code, show_link_code
from peer.device.toml import write_atomic
from peer.engine.lanstatus import LanStatus
from peer.engine.lanstatus import read_status as read_lan_status
from peer.engine.node import DeviceNode
from peer.engine.own_share import is_share_id, join_own_share
from peer.engine.restore import restore, select
from peer.engine.shares import (
    InviteCode,
    RemovalDone,
    create_share,
    invite_member,
    join_share,
    remove_member,
    revoke_in_shares,
    state_path,
)
from peer.errors import DriftError, ExitCode, NotFound, UsageError
from peer.remote.http import normalize_url
from peer.remote.recovery import claim_recovery_blob
from protocol import ids
from protocol.chain import Role
from protocol.errors import ProtocolError
from protocol.keys import DeviceCertificate, UserIdentity
from protocol.recovery import parse_recovery_code, recovery_verify_key, unwrap_user_key
from seams import SystemClock
from seams.random import OsRandom
from storage.memory import tune_allocator

EXIT_CODES = """\
exit codes:
  0    success
  1    unexpected error (run again with --debug for details)
  2    the command line is wrong
  3    done, but some files could not be synced (see `drift status`)
  4    the relay could not be reached or refused the request
  5    `drift conflicts` found conflicted copies
  10   this device is not set up yet: run `drift init`
  11   no such share, file or version
  130  interrupted (Ctrl-C)
"""

EXAMPLES = """\
examples:
  drift init --name laptop                 # your user and this device; shows a recovery code
  drift relay login https://relay.example  # sign this device in to a relay
  drift recover https://relay.example      # every device lost: your recovery code, a new device
  drift share create ~/Photos              # share a folder
  drift share invite Photos USER-CODE --role editor   # prints an invite code for them
  drift share join 'drift-invite:…' ~/Photos          # on their device
  drift run                                # sync all shares until Ctrl-C
  drift status --json                      # per share: files, pending, conflicts, why not
  drift restore ~/Photos/cat.jpg --version 2 --to /tmp/cat-v2.jpg
"""

DEVICE_CODE_PREFIX = "drift-device:"
CERT_CODE_PREFIX = "drift-cert:"


@dataclass
class Env:
    """What a command may touch of the world (tests pass their own)."""

    vars: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    inp: TextIO = field(default_factory=lambda: sys.stdin)

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def read_line(self, prompt: str) -> str:
        """One line typed by the user (the prompt goes to stderr, so --json output stays clean)."""
        if self.inp.isatty():
            print(prompt, end="", file=self.err, flush=True)
        return self.inp.readline().strip()

    def json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, sort_keys=True, default=str), file=self.out)


# -- the parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # Global options work before or after the command; SUPPRESS keeps a subcommand's parser from
    # overwriting a value given before it with its default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home",
        default=argparse.SUPPRESS,
        help="device state directory (default: DRIFT_HOME or the platform's data dir)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    parser = argparse.ArgumentParser(
        prog="drift",
        description="Keep folders in sync across your devices and with other people, through "
        "an end-to-end encrypted relay.",
        epilog=EXAMPLES + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, epilog: str = "", **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[common],
            epilog=(epilog + "\n\n" + EXIT_CODES) if epilog else EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kw,
        )

    p = add(
        "init",
        "create your user and this device's identity",
        "example: drift init --name laptop\nThe recovery code is shown once: write it down.",
    )
    p.add_argument("--name", default=os.uname().nodename[:64], help="this device's name")

    p = add(
        "recover",
        "lost every device? make this one a device of your user again, with your recovery code",
        "example: drift recover https://relay.example --name new-laptop\n"
        "The code is read from standard input (or DRIFT_RECOVERY_CODE); it never leaves this "
        "device.\nAfterwards revoke the lost devices: drift device revoke DEVICE-ID",
    )
    p.add_argument("url", help="the relay your account is on")
    p.add_argument("--name", default=os.uname().nodename[:64], help="this device's name")

    relay = add("relay", "sign this device in to a relay")
    relay_sub = relay.add_subparsers(dest="relay_command", required=True)
    login = relay_sub.add_parser("login", parents=[common], help="sign in (registers the user)")
    login.add_argument("url", help="the relay's URL, e.g. https://relay.example")
    login.add_argument("--invite", help="registration code, if the relay asks for one")

    device = add(
        "device",
        "link, add or revoke your devices",
        "linking a new device with a short one-time code (through your relay):\n"
        "  on a device with your user key:  drift device link\n"
        "      shows a code like ABCD-EFGH-JKMN (good once, for a few minutes) and waits\n"
        "  on the new device:               drift device add ABCD-EFGH-JKMN \\\n"
        "                                       --relay https://relay.example --name phone\n"
        "the new device is then signed in to the relay as one of yours.\n"
        "\n"
        "offline, without a relay (two long codes, neither secret):\n"
        "  new device:      drift device add            # prints a request code\n"
        "  holder device:   drift device link REQUEST   # prints a certificate code\n"
        "  new device:      drift device add CERT-CODE\n",
    )
    dev_sub = device.add_subparsers(dest="device_command", required=True)
    p = dev_sub.add_parser(
        "link",
        parents=[common],
        help="link a new device: show a one-time code and wait for it (needs the user key)",
    )
    p.add_argument(
        "request", nargs="?", help="offline linking: the request code the new device printed"
    )
    p = dev_sub.add_parser("add", parents=[common], help="set this device up as one of yours")
    p.add_argument(
        "code",
        nargs="?",
        help="the code `drift device link` shows (or, offline, the certificate code it printed)",
    )
    p.add_argument("--relay", help="your relay's URL (needed with a short code)")
    p.add_argument("--name", default=os.uname().nodename[:64], help="this device's name")
    p = dev_sub.add_parser("revoke", parents=[common], help="revoke a lost device")
    p.add_argument("device_id")
    dev_sub.add_parser("list", parents=[common], help="this device's ids")

    share = add("share", "create, invite to, join and manage shared folders")
    share_sub = share.add_subparsers(dest="share_command", required=True)
    p = share_sub.add_parser("create", parents=[common], help="share a folder")
    p.add_argument("path")
    p.add_argument("--name", default="")
    p = share_sub.add_parser("invite", parents=[common], help="invite a user; prints a code")
    p.add_argument("share")
    p.add_argument("user", help="their user code (`drift status` shows yours)")
    p.add_argument("--role", choices=["editor", "viewer", "owner"], default="editor")
    p = share_sub.add_parser(
        "join",
        parents=[common],
        help="join with an invite code, or by id a share your user is in (another device of yours)",
    )
    p.add_argument("code", help="the invite code, or the share id `drift device add` listed")
    p.add_argument("path")
    p = share_sub.add_parser("remove-member", parents=[common], help="remove a user")
    p.add_argument("share")
    p.add_argument("user")
    share_sub.add_parser("list", parents=[common], help="the shares this device syncs")

    p = add("run", "run the sync daemon in the foreground (Ctrl-C stops it)")
    p.add_argument("--once", action="store_true", help="one pass over every share, then exit")
    for name, text in (("pause", "pause syncing"), ("resume", "resume syncing")):
        p = add(name, text)
        p.add_argument("share", nargs="?", help="one share (default: all)")
        if name == "resume":
            p.add_argument(
                "--accept-deletes",
                action="store_true",
                help="propagate a mass deletion that paused the share",
            )
    add("status", "per share: files, bytes, pending, conflicts, and why a file is not synced")
    add("conflicts", "list conflicted copies (exit 5 when there are some)")
    p = add("history", "list a file's versions")
    p.add_argument("path")
    p = add(
        "restore",
        "restore a file or folder as it was",
        "examples:\n  drift restore ~/P/a.txt --version 2\n"
        "  drift restore ~/P/docs --at 2025-11-24T10:00 --to /tmp/docs-then",
    )
    p.add_argument("path")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--version", help="version number from `drift history` (1 = oldest)")
    group.add_argument("--at", help="a time: ISO 8601 or Unix seconds")
    p.add_argument("--to", help="where to write (default: the path itself)")
    add("trash", "list files deleted by sync (kept in each folder's .drift/trash)")
    return parser


# -- helpers -------------------------------------------------------------------------------------


def _home(args: argparse.Namespace, env: Env) -> Home:
    return Home(resolve_home(args.home, env.vars))


def _node(args: argparse.Namespace, env: Env, *, watch: bool = False) -> DeviceNode:
    return DeviceNode(_home(args, env), watch=watch)


def _share_id(config: DeviceConfig, name: str) -> str:
    share = config.share_by_name(name)
    if share is None:
        raise NotFound(f"no share called {name!r} on this device", hint="see `drift share list`")
    return share.share_id


def _locate(config: DeviceConfig, path: str) -> tuple[str, str]:
    """(share id, path inside the share) of a path on disk."""
    target = Path(path).expanduser().resolve()
    for share in config.shares.values():
        root = Path(share.path)
        if target == root or target.is_relative_to(root):
            return share.share_id, target.relative_to(root).as_posix().strip(".")
    raise NotFound(f"{target} is not inside a synced folder", hint="see `drift share list`")


def _resolve(path: str) -> Path:
    return Path(path).expanduser().resolve()


def _clock_time(text: str) -> int:
    with contextlib.suppress(ValueError):
        return int(float(text) * 1000)
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"cannot read the time {text!r}", hint="use 2025-11-24T10:00") from exc
    return int(moment.timestamp() * 1000)


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "never"


# -- commands ------------------------------------------------------------------------------------


async def cmd_init(args: argparse.Namespace, env: Env) -> int:
    home = _home(args, env)
    made = init_identity(home, args.name, SystemClock(), OsRandom())
    write_atomic(home.root / "recovery.blob", made.recovery_blob.encode())
    # The code is never stored; the key it derives lets the relay check a claim made with it.
    write_atomic(home.root / "recovery.key", recovery_verify_key(made.recovery_code))
    DeviceConfig(device_name=args.name).save(home.config)
    result = {
        "home": str(home.root),
        "device_id": ids.format_id(made.device.device_id),
        "user_code": user_code(made.user.public_key),
        "recovery_code": made.recovery_code,
    }
    if args.json:
        env.json(result)
    else:
        env.print(f"this device:   {result['device_id']}  ({args.name})")
        env.print(
            f"your user code (give it to people who share with you):\n  {result['user_code']}"
        )
        env.print("recovery code (shown ONCE; write it down, it restores your user key):")
        env.print(f"  {made.recovery_code}")
        env.print("next: drift relay login URL")
    return ExitCode.OK


async def cmd_recover(args: argparse.Namespace, env: Env) -> int:
    home = _home(args, env)
    url = normalize_url(args.url)
    code = env.vars.get("DRIFT_RECOVERY_CODE") or env.read_line("recovery code: ")
    try:
        parse_recovery_code(code)
    except ProtocolError as exc:
        raise UsageError(
            f"that is not a recovery code: {exc}",
            hint="type the 36 characters `drift init` showed, like ABCDEF-GHIJKL-…",
        ) from exc
    clock, rng = SystemClock(), OsRandom()
    blob = await claim_recovery_blob(url, code, clock)
    try:
        user = unwrap_user_key(blob, code)
    except ProtocolError as exc:
        raise DriftError(f"the relay's recovery blob does not open with this code: {exc}") from exc
    device = recover_identity(home, user, args.name, clock, rng)
    config = DeviceConfig(device_name=args.name, relay_url=url)
    config.save(home.config)
    node = DeviceNode(home, watch=False)
    try:
        await node.link.login(register=False)  # type: ignore[attr-defined]
    finally:
        await node.close()
    result = {
        "home": str(home.root),
        "device_id": ids.format_id(device.device_id),
        "user_code": user_code(user.public_key),
        "relay_url": url,
    }
    if args.json:
        env.json(result)
    else:
        env.print(f"your user is back on this device: {result['device_id']} ({args.name})")
        env.print(f"user code: {result['user_code']}")
        env.print("next: revoke the lost devices (drift device revoke DEVICE-ID)")
    return ExitCode.OK


async def cmd_relay_login(args: argparse.Namespace, env: Env) -> int:
    home = _home(args, env)
    config = DeviceConfig.load(home.config)
    config.relay_url = normalize_url(args.url)
    node = DeviceNode(home, watch=False)
    node.config.relay_url = config.relay_url
    try:
        link = node.link
        await link.login(register=True, invite=args.invite)  # type: ignore[attr-defined]
        blob, key = home.root / "recovery.blob", home.root / "recovery.key"
        if blob.exists():
            await link.put_recovery(blob.read_bytes(), key.read_bytes() if key.exists() else None)
            blob.unlink()  # the relay keeps it now (sealed: useless without the code)
            key.unlink(missing_ok=True)
    finally:
        await node.close()
    config.save(home.config)
    if args.json:
        env.json({"relay_url": config.relay_url})
    else:
        env.print(f"signed in to {config.relay_url}; next: drift share create PATH")
    return ExitCode.OK


async def _show_link_code(args: argparse.Namespace, env: Env, user: UserIdentity) -> int:
    node = _node(args, env)
    if not node.config.relay_url:
        raise UsageError(
            "this device is not signed in to a relay, which the code goes through",
            hint="run `drift relay login URL` first, or link offline (see `drift device --help`)",
        )
    url = node.config.relay_url

    def show(code: str, expires_ms: int) -> None:
        out = env.err if args.json else env.out
        print("on the new device run:", file=out)
        print(f"  drift device add {code} --relay {url} --name NAME", file=out)
        print(f"the code works once, until {_when(expires_ms)}; waiting…", file=out, flush=True)

    try:
        certificate = await show_link_code(
            node.link,  # type: ignore[arg-type]
            user,
            SystemClock(),
            show,
        )
    finally:
        await node.close()
    device_id = ids.format_id(certificate.device_id)
    if args.json:
        env.json({"linked_device_id": device_id, "name": certificate.name})
    else:
        env.print(f"linked device {device_id} ({certificate.name})")
    return ExitCode.OK


async def _add_with_code(args: argparse.Namespace, env: Env, home: Home) -> int:
    url = args.relay or DeviceConfig.load(home.config).relay_url
    if not url:
        raise UsageError(
            "which relay? the device showing the code waits there",
            hint="add --relay URL (the command `drift device link` printed has it)",
        )
    try:
        url = normalize_url(url)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    clock, rng = SystemClock(), OsRandom()
    certified = await link_with_code(home, url, args.code, args.name, clock, rng)
    DeviceConfig(device_name=args.name, relay_url=url).save(home.config)
    node = DeviceNode(home, watch=False)
    try:
        await node.link.login(register=False)  # type: ignore[attr-defined]
        shares = await node.link.list_shares()
    finally:
        await node.close()
    result = {
        "shares": [{"share": s.share_id, "role": s.role} for s in shares],
        "device_id": ids.format_id(certified.device_id),
        "user_code": user_code(certified.certificate.user_key),
        "relay_url": url,
    }
    if args.json:
        env.json(result)
    else:
        env.print(f"this device is now {result['device_id']} ({args.name}), one of user")
        env.print(f"  {result['user_code']}, signed in to {url}")
        for remote in shares:
            env.print(f"your share {remote.share_id} ({remote.role}): drift share join ID PATH")
    return ExitCode.OK


async def cmd_device(args: argparse.Namespace, env: Env) -> int:
    home = _home(args, env)
    rng, clock = OsRandom(), SystemClock()
    if args.device_command == "list":
        device = load_device(home, rng)
        env.json(
            {
                "device_id": ids.format_id(device.device_id),
                "user_code": user_code(device.certificate.user_key),
            }
        ) if args.json else env.print(
            f"device {ids.format_id(device.device_id)} of user "
            f"{user_code(device.certificate.user_key)}"
        )
        return ExitCode.OK
    if args.device_command == "add":
        if args.code is not None and not args.code.startswith(CERT_CODE_PREFIX):
            return await _add_with_code(args, env, home)
        if args.code is None:
            key = new_device_key(home, rng)
            DeviceConfig(device_name=args.name).save(home.config)
            raw = key.public_key + args.name.encode()[:64]
            code = DEVICE_CODE_PREFIX + base64.b32encode(raw).decode().rstrip("=")
            env.print("on a device that holds your user key run:")
            env.print(f"  drift device link {code}")
            env.print("then here: drift device add CERT-CODE")
            return ExitCode.OK
        certificate = _decode_code(args.code, CERT_CODE_PREFIX, DeviceCertificate)
        certified = install_certificate(home, certificate)
        env.print(
            f"this device is now {ids.format_id(certified.device_id)}; next: drift relay login URL"
        )
        return ExitCode.OK
    user = load_user(home)
    if user is None:
        raise UsageError(
            "this device does not hold your user key",
            hint="run this on the device where you ran `drift init`",
        )
    if args.device_command == "link" and args.request is None:
        return await _show_link_code(args, env, user)
    if args.device_command == "link":
        raw = _b32(args.request, DEVICE_CODE_PREFIX)
        if len(raw) < 32:
            raise UsageError("this request code is damaged", hint="copy it again")
        certificate = user.certify(raw[:32], raw[32:].decode(errors="replace"), clock.now_ms())
        code = CERT_CODE_PREFIX + base64.b32encode(certificate.encode()).decode().rstrip("=")
        env.print("on the new device run:")
        env.print(f"  drift device add {code}")
        return ExitCode.OK
    node = _node(args, env)
    try:
        try:
            statement = user.revoke(ids.parse_id(args.device_id), clock.now_ms())
        except ProtocolError as exc:
            raise UsageError(f"not a device id: {exc}") from exc
        if statement.device_id == node.device.device_id:
            raise UsageError(
                "this is the device you are using", hint="revoke it from another of your devices"
            )
        # The shares first: once the relay refuses the device, its cutoffs are what it holds.
        done = await revoke_in_shares(
            node.home,
            node.config,
            node.device,
            node.link,
            statement,
            clock=clock,
            rng=rng,
            databases=node.seams.databases,
        )
        new = await node.link.revoke_device(statement.encode())
    finally:
        await node.close()
    env.print("revoked" if new else "that device was already revoked")
    _print_rotations(env, done)
    return ExitCode.OK


def _print_rotations(env: Env, done: list[RemovalDone]) -> None:
    for item in done:
        if item.rotation is not None:
            env.print(
                f"share {item.share}: keys rotated to epoch {item.rotation.epoch} "
                f"({item.rotation.wrapped} device(s) given the new key); what is written from "
                "now on does not open for them"
            )
        else:
            env.print(f"share {item.share}: {item.reason}")


def _b32(text: str, prefix: str) -> bytes:
    text = text.strip()
    if not text.startswith(prefix):
        raise UsageError(f"expected a code starting with {prefix!r}")
    body = text[len(prefix) :].upper()
    try:
        return base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as exc:
        raise UsageError("this code is damaged", hint="copy it again") from exc


def _decode_code(text: str, prefix: str, kind: type[DeviceCertificate]) -> DeviceCertificate:
    try:
        return kind.decode(_b32(text, prefix)).verify()
    except ProtocolError as exc:
        raise UsageError(f"this code does not hold a valid certificate: {exc}") from exc


async def cmd_share(args: argparse.Namespace, env: Env) -> int:
    node = _node(args, env)
    clock, rng = SystemClock(), OsRandom()
    try:
        if args.share_command == "list":
            rows = [asdict(s) for s in node.config.shares.values()]
            if args.json:
                env.json(rows)
            for row in [] if args.json else rows:
                env.print(f"{row['name']:<20} {row['share_id']}  {row['path']}")
            return ExitCode.OK
        if args.share_command == "create":
            share = await create_share(
                node.home,
                node.config,
                node.device,
                node.link,
                Path(args.path),
                name=args.name,
                clock=clock,
                rng=rng,
                databases=node.seams.databases,
            )
            env.json({"share": share}) if args.json else env.print(
                f"created share {share} for {_resolve(args.path)}\n"
                "next: drift share invite SHARE USER-CODE, then drift run"
            )
            return ExitCode.OK
        if args.share_command == "invite":
            share = _share_id(node.config, args.share)
            code = await invite_member(
                node.home,
                node.config,
                node.device,
                node.link,
                share,
                parse_user_code(args.user),
                Role(args.role),
                clock=clock,
                rng=rng,
                databases=node.seams.databases,
            )
            env.json({"invite": code}) if args.json else env.print(
                f"give this code to them (it carries the share's keys; send it privately):\n"
                f"  {code}\nthey run: drift share join CODE PATH"
            )
            return ExitCode.OK
        if args.share_command == "join" and is_share_id(args.code):
            share = await join_own_share(
                node.home,
                node.config,
                node.device,
                node.link,
                args.code,
                Path(args.path),
                databases=node.seams.databases,
            )
            env.json({"share": share}) if args.json else env.print(
                f"joined share {share}; run `drift run` to sync it"
            )
            return ExitCode.OK
        if args.share_command == "join":
            share = await join_share(
                node.home,
                node.config,
                node.device,
                node.link,
                InviteCode.from_text(args.code),
                Path(args.path),
                databases=node.seams.databases,
            )
            env.json({"share": share}) if args.json else env.print(
                f"joined share {share}; run `drift run` to sync it"
            )
            return ExitCode.OK
        share = _share_id(node.config, args.share)
        done = await remove_member(
            node.home,
            node.device,
            node.link,
            share,
            parse_user_code(args.user),
            clock=clock,
            rng=rng,
            databases=node.seams.databases,
        )
        env.print("removed; the relay gives them nothing new from now on")
        _print_rotations(env, [done])
        return ExitCode.OK
    finally:
        await node.close()


async def cmd_run(args: argparse.Namespace, env: Env) -> int:
    node = _node(args, env, watch=not args.once)
    try:
        if args.once:
            with _progress(env, node, enabled=not args.json and env.out.isatty()):
                reports = await node.sync_once()
            errors = sum(r.errors for r in reports.values())
            if args.json:
                env.json({s: asdict(r) for s, r in reports.items()})
            return ExitCode.FILE_ERRORS if errors else ExitCode.OK
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        env.print(f"syncing {len(node.config.shares)} share(s); Ctrl-C stops")
        activity = logging.StreamHandler(env.out)
        activity.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        engine_log = logging.getLogger("peer.engine")
        engine_log.addHandler(activity)
        engine_log.setLevel(logging.INFO)
        await node.run(stop)
        return ExitCode.OK
    finally:
        await node.close()


@contextlib.contextmanager
def _progress(env: Env, node: DeviceNode, *, enabled: bool) -> Iterator[None]:
    """A rich progress bar per share and phase (upload, download), on a terminal only."""
    if not enabled:
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(file=env.out),
        transient=False,
    ) as bars:
        tasks: dict[tuple[str, str], Any] = {}
        for sid, share in node.config.shares.items():

            def report(phase: str, done: int, total: int, sid: str = sid, name: str = share.name):
                key = (sid, phase)
                if key not in tasks:
                    tasks[key] = bars.add_task(f"{name} {phase}", total=total)
                bars.update(tasks[key], completed=done, total=total)

            node.share(sid).on_progress = report
        yield


async def cmd_pause_resume(args: argparse.Namespace, env: Env) -> int:
    home = _home(args, env)
    config = DeviceConfig.load(home.config)
    targets = [_share_id(config, args.share)] if args.share else list(config.shares)
    for sid in targets:
        config.shares[sid].paused = args.command == "pause"
        if args.command == "resume" and args.accept_deletes:
            from peer.device.store import ShareStore

            store = ShareStore(state_path(home, sid))
            store.set("accept_deletes", True)
            store.close()
    config.save(home.config)
    env.print(f"{args.command}d {len(targets)} share(s)")
    return ExitCode.OK


async def cmd_status(args: argparse.Namespace, env: Env) -> int:
    node = _node(args, env)
    try:
        statuses = [node.status(sid) for sid in node.config.shares]
        user = user_code(node.device.certificate.user_key)
        lan = read_lan_status(node.home, SystemClock().now_ms())
        if args.json:
            env.json(
                {
                    "user_code": user,
                    "device_id": ids.format_id(node.device.device_id),
                    "relay_url": node.config.relay_url,
                    "lan": _lan_json(node, lan),
                    "shares": [asdict(s) for s in statuses],
                }
            )
        else:
            _print_status(env, node, statuses, user)
            _print_lan(env, node, lan)
        failing = any(s.file_errors for s in statuses)
        return ExitCode.FILE_ERRORS if failing else ExitCode.OK
    finally:
        await node.close()


def _lan_json(node: DeviceNode, lan: LanStatus | None) -> dict[str, object]:
    """``enabled`` from the config; ``running`` and the peers from the daemon, if it runs."""
    out: dict[str, object] = {"enabled": node.config.lan_enabled, "running": lan is not None}
    if lan is not None:
        out.update(port=lan.port, addresses=lan.addresses, peers=[asdict(p) for p in lan.peers])
    return out


def _print_lan(env: Env, node: DeviceNode, lan: LanStatus | None) -> None:
    if not node.config.lan_enabled:
        env.out.write("LAN peers: off (lan_enabled = false in the config)\n")
        return
    if lan is None:
        env.out.write("LAN peers: not running (start the daemon: drift run)\n")
        return
    where = ", ".join(lan.addresses) or "127.0.0.1"
    env.out.write(f"LAN: listening on {where} port {lan.port}; {len(lan.peers)} peer(s)\n")
    for p in lan.peers:
        env.out.write(
            f"  {p.name} ({p.device_id[:14]}…) at {p.address}: {p.state}, "
            f"sent {p.sent_bytes:,} bytes, received {p.received_bytes:,} bytes\n"
        )


def _print_status(env: Env, node: DeviceNode, statuses: list[Any], user: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=env.out, width=120)
    console.print(f"user code {user}\nrelay {node.config.relay_url or '(none: drift relay login)'}")
    for s in statuses:
        name = node.config.shares[s.share_id].name
        table = Table(title=f"{name} — {s.path}", show_header=False)
        table.add_row("state", f"{s.state}" + (f": {s.reason}" if s.reason else ""))
        table.add_row("files", f"{s.files} files, {s.dirs} folders, {s.bytes:,} bytes")
        table.add_row("pending", f"up {s.pending_up} changes, down {s.pending_down} files")
        table.add_row("last sync", _when(s.last_sync_ms))
        table.add_row("peers", ", ".join(s.peers) or "none seen yet")
        table.add_row("conflicts", "\n".join(s.conflicts) or "none")
        table.add_row(
            "not synced", "\n".join(f"{p}: {w}" for p, w in s.not_synced.items()) or "nothing"
        )
        console.print(table)


async def cmd_conflicts(args: argparse.Namespace, env: Env) -> int:
    node = _node(args, env)
    try:
        found = {
            node.config.shares[sid].path: node.status(sid).conflicts for sid in node.config.shares
        }
    finally:
        await node.close()
    if args.json:
        env.json(found)
    else:
        for root, paths in found.items():
            for path in paths:
                env.print(str(Path(root) / path))
        if not any(found.values()):
            env.print("no conflicted copies")
    return ExitCode.CONFLICTS if any(found.values()) else ExitCode.OK


async def cmd_history(args: argparse.Namespace, env: Env) -> int:
    node = _node(args, env)
    try:
        sid, rel = _locate(node.config, args.path)
        tree = node.share(sid).tree
        entry = tree.lookup(rel)
        if entry is None:
            raise NotFound(
                f"{rel!r} is not in the share now",
                hint="a deleted file comes back with: drift restore PATH --at TIME",
            )
        history = tree.history(entry.nodes[0])
        rows = [
            {
                "version": i + 1,
                "id": v.version.version_id,
                "size": v.version.size,
                "modified": _when(v.version.mtime_ms),
                "written": _when(v.w),
                "author": v.version.author,
            }
            for i, v in enumerate(history.versions)
        ]
    finally:
        await node.close()
    if args.json:
        env.json(rows)
    else:
        for r in rows:
            env.print(f"{r['version']:>3}  {r['written']}  {r['size']:>12,} B  by {r['author']}")
    return ExitCode.OK


async def cmd_restore(args: argparse.Namespace, env: Env) -> int:
    node = _node(args, env)
    try:
        sid, rel = _locate(node.config, args.path)
        sync = node.share(sid)
        try:
            version = int(args.version) if args.version else None
        except ValueError as exc:
            raise UsageError("--version takes a number from `drift history`") from exc
        at_ms = _clock_time(args.at) if args.at else None
        items = select(sync, rel, version=version, at_ms=at_ms)
        dest = _resolve(args.to) if args.to else Path(node.config.shares[sid].path) / rel
        written = await restore(sync, rel, items, dest)
    finally:
        await node.close()
    env.print(f"restored {written} file(s) to {dest}")
    return ExitCode.OK


async def cmd_trash(args: argparse.Namespace, env: Env) -> int:
    config = DeviceConfig.load(_home(args, env).config)
    found = []
    for share in config.shares.values():
        trash = Path(share.path) / ".drift" / "trash"
        for item in sorted(trash.rglob("*")) if trash.exists() else []:
            if item.is_file():
                tag, _, rel = item.relative_to(trash).as_posix().partition("/")
                found.append(
                    {
                        "share": share.name,
                        "path": rel,
                        "deleted": _when(int(tag) if tag.isdigit() else 0),
                        "stored_at": str(item),
                    }
                )
    if args.json:
        env.json(found)
    else:
        for f in found:
            env.print(
                f"{f['deleted']}  {f['share']}/{f['path']}\n    copy back from {f['stored_at']}"
            )
        if not found:
            env.print("the trash is empty")
    return ExitCode.OK


COMMANDS = {
    "init": cmd_init,
    "recover": cmd_recover,
    "device": cmd_device,
    "share": cmd_share,
    "run": cmd_run,
    "pause": cmd_pause_resume,
    "resume": cmd_pause_resume,
    "status": cmd_status,
    "conflicts": cmd_conflicts,
    "history": cmd_history,
    "restore": cmd_restore,
    "trash": cmd_trash,
}

HANDLED_WORDS = (*COMMANDS, "relay login")


def main(argv: Sequence[str] | None = None, env: Env | None = None) -> int:
    env = env or Env()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    for name, default in (("home", None), ("json", False), ("debug", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    tune_allocator()  # large buffers straight back to the OS: peak RSS follows live memory
    handler = cmd_relay_login if args.command == "relay" else COMMANDS[args.command]
    try:
        return int(asyncio.run(handler(args, env)))
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except DriftError as exc:
        if args.debug:
            raise
        print(f"drift {args.command}: {exc.message}", file=env.err)
        if exc.hint:
            print(f"  next: {exc.hint}", file=env.err)
        return int(exc.exit_code)
    except ProtocolError as exc:
        if args.debug:
            raise
        print(f"drift {args.command}: {exc}", file=env.err)
        return ExitCode.FATAL


if __name__ == "__main__":
    sys.exit(main())
