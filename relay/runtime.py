"""Building a relay's parts from its settings: the one place backends are chosen."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from relay.blocks import BlockAccess, Presigner
from relay.db import Database, open_database
from relay.metrics import RelayMetrics
from relay.notify import open_notifier
from relay.service import RelayService
from relay.settings import JwtKey, Settings, SettingsError
from relay.tokens import TokenAuthority
from seams import Clock, Executor, OsRandom, RandomSource, SystemClock, ThreadExecutor
from storage.blockstore import BlockStore
from storage.dirstore import DirectoryBlockStore
from storage.s3store import S3BlockStore

LOCAL_KEY_FILE = "jwt-signing.key"


@dataclass(frozen=True)
class Seams:
    """What a simulation swaps: the clock, randomness and where blocking work runs."""

    clock: Clock
    rng: RandomSource
    executor: Executor

    @classmethod
    def real(cls) -> Seams:
        return cls(SystemClock(), OsRandom(), ThreadExecutor(max_workers=8, name="relay"))


def local_jwt_key(data_dir: Path, rng: RandomSource) -> JwtKey:
    """A single relay's own signing key, created once in its data directory (mode 0600)."""
    path = data_dir / LOCAL_KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(rng.bytes(32).hex())
    return JwtKey("local", path.read_text().strip().encode())


def with_keys(settings: Settings, rng: RandomSource) -> Settings:
    if settings.jwt_keys:
        return settings
    if not settings.effective_database_url.startswith(("sqlite:", "memory:")):
        raise SettingsError(
            "relays sharing a database must share their token keys: configure [[jwt_keys]]"
        )
    return replace(settings, jwt_keys=(local_jwt_key(settings.data_dir, rng),))


def open_block_store(settings: Settings, executor: Executor) -> tuple[BlockStore, Presigner | None]:
    url = settings.effective_blocks_url
    if url.startswith("file://"):
        return DirectoryBlockStore(url.removeprefix("file://"), executor=executor.as_pool()), None
    parts = urlsplit(url)
    bucket, prefix = parts.netloc, parts.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    # One client for the store and the presigner: the URLs it signs name the same endpoint.
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        config=Config(
            retries={"max_attempts": 1, "mode": "standard"},
            max_pool_connections=32,
            connect_timeout=10,
            read_timeout=60,
        ),
    )
    store = S3BlockStore(bucket, prefix=prefix, client=client, executor=executor.as_pool())
    return store, Presigner(client, bucket, prefix)


async def build_service(
    settings: Settings, seams: Seams, metrics: RelayMetrics | None = None
) -> RelayService:
    settings = with_keys(settings.validate(), seams.rng)
    db: Database = await open_database(
        settings.effective_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    try:
        store, presigner = open_block_store(settings, seams.executor)
        notifier = open_notifier(settings.notify_url, settings.redis_prefix, seams.clock, seams.rng)
        await notifier.start()
    except BaseException:
        await db.close()
        raise
    return RelayService(
        settings=settings,
        db=db,
        blocks=BlockAccess(store, seams.executor, presigner if settings.s3_presign else None),
        notifier=notifier,
        tokens=TokenAuthority(settings.jwt_keys, settings.effective_origin, settings.token_ttl_s),
        clock=seams.clock,
        rng=seams.rng,
        executor=seams.executor,
        metrics=metrics or RelayMetrics(),
    )


async def close_service(service: RelayService) -> None:
    await service.notifier.close()
    await service.blocks.store.close()
    await service.db.close()
