"""``drift relay``: run and administer a relay.

Settings come from a TOML file (``--config``), then ``DRIFT_RELAY_<FIELD>`` environment variables
(how a container receives its database URL), then the flags. Exit codes: 0 ok, 1 fatal (the
message says why), 2 usage or configuration error, 3 the audit found problems, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from dataclasses import replace
from enum import IntEnum
from pathlib import Path
from typing import Any

from relay import logs
from relay.db import DatabaseError
from relay.settings import Settings, SettingsError

EXAMPLES = """\
examples:
  drift relay serve --data-dir ./relay-data                  # loopback, SQLite + directory
  drift relay serve --host 0.0.0.0 --port 443 --tls-cert c.pem --tls-key k.pem --data-dir /srv/d
  drift relay serve --config /etc/driftsync/relay.toml       # PostgreSQL + S3 + Redis
  drift relay invite --data-dir ./relay-data CODE            # allow one invite-only registration
  drift relay audit --config /etc/driftsync/relay.toml --json # blocks vs database; reports only
"""


class ExitCode(IntEnum):
    OK = 0
    FATAL = 1
    USAGE = 2
    PROBLEMS = 3
    INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drift relay",
        description="Run a driftsync relay: it stores end-to-end encrypted blocks and updates "
        "and decides who may read and write; it can read no file, name or tree.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("serve", "run the relay"),
        ("invite", "register an invite code (registration = invite)"),
        ("check", "validate the configuration and open the backends, then exit"),
        ("audit", "check every stored block against its id and the database; never deletes"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", type=Path, help="TOML file with the settings")
        p.add_argument("--data-dir", type=Path, help="where the embedded database and blocks live")
        p.add_argument("--database-url", help="sqlite:///path or postgresql://user@host/db")
        p.add_argument("--blocks-url", help="file:///path or s3://bucket/prefix")
        p.add_argument("--notify-url", help="local: or redis://host:port/0")
        p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS)")
        if name == "serve":
            p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
            p.add_argument("--port", type=int, help="port to listen on (default 8443)")
            p.add_argument("--tls-cert", type=Path, help="PEM certificate (required off loopback)")
            p.add_argument("--tls-key", type=Path, help="PEM private key")
            p.add_argument("--origin", help="public URL devices use (default from host and port)")
            p.add_argument("--registration", choices=["open", "invite"])
            p.add_argument("--log-level", default=None)
        if name == "invite":
            p.add_argument("code", help="the invite code to accept once")
        if name == "audit":
            p.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings()
    if args.config is not None:
        settings = Settings.from_toml(args.config)
    try:
        settings = Settings.from_env(os.environ, base=settings)
    except ValueError as exc:
        raise SettingsError(f"invalid DRIFT_RELAY_* environment variable: {exc}") from exc
    overrides: dict[str, Any] = {}
    for name in (
        "host",
        "port",
        "data_dir",
        "tls_cert",
        "tls_key",
        "origin",
        "database_url",
        "blocks_url",
        "notify_url",
        "s3_endpoint_url",
        "registration",
        "log_level",
    ):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return replace(settings, **overrides).validate()


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    return ctx


def serve(settings: Settings) -> int:
    from aiohttp import web

    from relay.http import create_app

    logs.configure(settings.log_level)
    log = logging.getLogger("relay.cli")
    log.info("relay starting", extra={"route": settings.effective_origin})
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ssl_context=_ssl_context(settings),
        shutdown_timeout=settings.shutdown_grace_s,
        access_log=None,
        print=None,
    )
    log.info("relay stopped")
    return ExitCode.OK


async def _invite(settings: Settings, code: str) -> None:
    from relay.runtime import Seams, build_service, close_service
    from seams import InlineExecutor, OsRandom, SystemClock

    service = await build_service(settings, Seams(SystemClock(), OsRandom(), InlineExecutor()))
    try:
        await service.create_invite(code)
    finally:
        await close_service(service)


async def _check(settings: Settings) -> None:
    from relay.runtime import Seams, build_service, close_service
    from seams import InlineExecutor, OsRandom, SystemClock

    service = await build_service(settings, Seams(SystemClock(), OsRandom(), InlineExecutor()))
    await close_service(service)


async def _audit(settings: Settings, as_json: bool) -> int:
    from relay.audit import audit
    from relay.db import open_database
    from relay.runtime import open_block_store
    from seams import ThreadExecutor

    executor = ThreadExecutor(8, "audit")
    db = await open_database(
        settings.effective_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    try:
        store, _ = open_block_store(settings, executor)
        try:
            report = await audit(
                db, store, None if as_json else lambda step: print(step, file=sys.stderr)
            )
        finally:
            await store.close()
    finally:
        await db.close()
        executor.shutdown()
    if as_json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        print(
            f"{report.blocks_checked} blocks ({report.bytes_checked} bytes) intact; "
            f"{report.share_blocks_checked} recorded blocks, {report.envelopes_checked} "
            f"envelopes ({report.references_checked} block references, {report.owed} owed)"
        )
        for name, finding, meaning in (
            ("corrupt", report.corrupt, "stored bytes do not hash to their block id"),
            ("missing", report.missing, "recorded as a share's block but not in the store"),
            ("unaccounted", report.unaccounted, "referenced by an envelope, neither held nor owed"),
            ("damaged_envelopes", report.damaged_envelopes, "stored envelopes that do not decode"),
        ):
            if finding.count:
                print(f"{name}: {finding.count} ({meaning})")
                for item in finding.listed[:20]:
                    print("  " + " ".join(f"{k}={v}" for k, v in item.items()))
        print("clean" if report.clean else "problems found; nothing was changed")
    return ExitCode.OK if report.clean else ExitCode.PROBLEMS


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        settings = settings_from(args)
    except SettingsError as exc:
        print(f"drift relay: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        if args.command == "serve":
            return serve(settings)
        if args.command == "audit":
            return asyncio.run(_audit(settings, args.json))
        if args.command == "invite":
            asyncio.run(_invite(settings, args.code))
            print("invite code registered; it admits one registration")
            return ExitCode.OK
        asyncio.run(_check(settings))
        print("configuration ok; database, block store and notifier opened")
        return ExitCode.OK
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except SettingsError as exc:
        print(f"drift relay: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except (OSError, DatabaseError) as exc:
        print(f"drift relay: {exc}", file=sys.stderr)
        return ExitCode.FATAL
