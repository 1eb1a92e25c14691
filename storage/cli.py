"""`drift store`: ingest a folder into an encrypted block store, restore it, check a store.

Until the peer exists this is how to use the storage core by hand::

    drift store keygen demo-keys.json
    drift store ingest --keys demo-keys.json --store ./blocks --snapshot snap.json ~/Photos
    drift store restore --keys demo-keys.json --store ./blocks --snapshot snap.json /tmp/photos
    drift store verify --store s3://bucket/prefix --endpoint-url http://127.0.0.1:9000

A key file holds secrets in the clear (mode 0600): keep it apart from the store. A snapshot holds
file names in the clear: it belongs on the device, not next to the blocks.

Exit status: 0 ok; 1 failure (message on stderr); 2 bad usage; 3 partial: some files could not
be ingested or restored, or verify found damaged blocks (each listed on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path

from storage.blockstore import BlockStore
from storage.dirstore import DirectoryBlockStore
from storage.errors import IntegrityError, ParameterError, StorageError
from storage.keys import Keyring, SealingKey, ShareKeys
from storage.memory import tune_allocator
from storage.tree import TreeSnapshot, ingest_tree, restore_tree


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    PARTIAL = 3  # some files (listed on stderr) were skipped, or blocks found damaged
    INTERRUPTED = 130


def load_keys(path: Path) -> tuple[ShareKeys, Keyring]:
    try:
        raw = json.loads(path.read_text())
        share = ShareKeys(
            bytes.fromhex(raw["share_id"]),
            bytes.fromhex(raw["chunking_key"]),
            bytes.fromhex(raw["chunk_id_key"]),
        )
        ring = Keyring(SealingKey(int(e), bytes.fromhex(k)) for e, k in raw["epochs"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ParameterError(f"cannot read key file {path}: {exc}") from None
    return share, ring


def open_store(spec: str, endpoint_url: str | None) -> BlockStore:
    if spec.startswith("s3://"):
        from storage.s3store import S3BlockStore  # boto3 is slow to import: only when needed

        bucket, _, prefix = spec.removeprefix("s3://").partition("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return S3BlockStore(bucket, prefix=prefix, endpoint_url=endpoint_url)
    return DirectoryBlockStore(spec)


def cmd_keygen(args: argparse.Namespace) -> int:
    keys = {
        "share_id": secrets.token_bytes(16).hex(),
        "chunking_key": secrets.token_bytes(32).hex(),
        "chunk_id_key": secrets.token_bytes(32).hex(),
        "epochs": {"1": secrets.token_bytes(32).hex()},
    }
    fd = os.open(args.keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(keys, out, indent=1)
    print(f"wrote new share keys to {args.keyfile} (keep it secret, keep it apart from the store)")
    return ExitCode.OK


async def cmd_ingest(args: argparse.Namespace) -> int:
    share, ring = load_keys(args.keys)
    store = open_store(args.store, args.endpoint_url)
    try:
        snapshot, stats = await ingest_tree(args.source, store, share, ring.latest)
    finally:
        await store.close()
    args.snapshot.write_text(snapshot.to_json())
    for error in stats.errors:
        print(f"skipped {error.path}: {error.reason}", file=sys.stderr)
    print(
        f"ingested {stats.files} files, {stats.bytes / 1e6:.1f} MB in {stats.chunks} chunks at "
        f"{stats.mb_per_s:.0f} MB/s: {stats.new_blocks} new blocks "
        f"({stats.new_block_bytes / 1e6:.1f} MB sealed), {stats.reused_blocks} already stored, "
        f"dedup {stats.dedup_ratio:.2f}x"
    )
    print(f"snapshot: {args.snapshot}")
    return ExitCode.PARTIAL if stats.errors else ExitCode.OK


async def cmd_restore(args: argparse.Namespace) -> int:
    share, ring = load_keys(args.keys)
    try:
        snapshot = TreeSnapshot.from_json(args.snapshot.read_text())
    except OSError as exc:
        raise ParameterError(f"cannot read snapshot {args.snapshot}: {exc.strerror}") from None
    store = open_store(args.store, args.endpoint_url)
    try:
        written, errors = await restore_tree(snapshot, store, share, ring, args.dest)
    finally:
        await store.close()
    for error in errors:
        print(f"not restored {error.path}: {error.reason}", file=sys.stderr)
    restored = len(snapshot.files) - len(errors)
    print(f"restored {restored} files, {written / 1e6:.1f} MB into {args.dest}")
    return ExitCode.PARTIAL if errors else ExitCode.OK


async def cmd_verify(args: argparse.Namespace) -> int:
    store = open_store(args.store, args.endpoint_url)
    good = damaged = 0
    try:
        async for block_id in store.iter_ids():
            try:
                await store.get(block_id)  # every get checks SHA-256 against the id
                good += 1
            except IntegrityError as exc:
                damaged += 1
                print(f"damaged: {exc}", file=sys.stderr)
    finally:
        await store.close()
    print(f"{good} blocks intact, {damaged} damaged")
    return ExitCode.PARTIAL if damaged else ExitCode.OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drift store",
        description=__doc__.split("\n\n")[0],
        epilog="exit status: 0 ok, 1 failure, 2 bad usage, 3 partial (files skipped or damaged "
        "blocks, listed on stderr)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    keygen = sub.add_parser("keygen", help="write a new key file for a share")
    keygen.add_argument("keyfile", type=Path)

    def store_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", required=True, help="a directory, or s3://bucket/prefix")
        p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS)")

    ingest = sub.add_parser("ingest", help="chunk, encrypt and store every file of a folder")
    ingest.add_argument("--keys", type=Path, required=True)
    store_options(ingest)
    ingest.add_argument("--snapshot", type=Path, required=True, help="where the snapshot goes")
    ingest.add_argument("source", type=Path)

    restore = sub.add_parser("restore", help="restore a snapshot's files from the store")
    restore.add_argument("--keys", type=Path, required=True)
    store_options(restore)
    restore.add_argument("--snapshot", type=Path, required=True)
    restore.add_argument("dest", type=Path)

    verify = sub.add_parser("verify", help="check every block in a store against its id")
    sub.add_parser(
        "demo",
        help="the storage core alone: ingest, restore and re-ingest a generated folder",
        add_help=False,
    )
    store_options(verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from storage import demo  # its own options (--out, --seed, --files)

        return demo.main(argv[1:])
    args = build_parser().parse_args(argv)
    tune_allocator()
    try:
        if args.command == "keygen":
            return cmd_keygen(args)
        handler = {"ingest": cmd_ingest, "restore": cmd_restore, "verify": cmd_verify}
        return asyncio.run(handler[args.command](args))
    except FileExistsError as exc:
        print(f"drift store: {exc.filename} already exists; not overwriting it", file=sys.stderr)
        return ExitCode.FAILED
    except StorageError as exc:
        print(f"drift store: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
