"""A block store in S3 (or any S3-compatible service) via boto3: the relay's scale-out backend.

Objects live at ``<prefix>blocks/<64 hex digits>``. A put sends ``If-None-Match: *`` (so it never
replaces a stored block; a 412 means the block is already there) and the SHA-256 checksum (the
block id), so S3 itself rejects bytes damaged on the way. Transient failures (throttling, 5xx,
connection errors, a concurrent conditional write) are retried a bounded number of times with
jittered exponential backoff; whatever remains becomes a :class:`StoreError`.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storage.blockstore import BlockStore
from storage.errors import BlockNotFoundError, StorageError, StoreError
from storage.hashing import BlockId, Buffer, parse_block_id, verify_block_id

T = TypeVar("T")

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_ALREADY_THERE = {"412", "PreconditionFailed"}
_TRANSIENT = {
    "409",
    "ConditionalRequestConflict",
    "BadDigest",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class S3BlockStore(BlockStore):
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        client: Any | None = None,
        executor: Executor | None = None,
        max_attempts: int = 5,
        backoff_s: float = 0.05,
        concurrency: int = 8,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(executor)
        self.bucket = bucket
        self.prefix = prefix
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self._rng = rng or random.Random()
        self._client = client or boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            # Retries are ours (bounded, mapped to StoreError); botocore's would stack on top.
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"},
                max_pool_connections=max(10, concurrency * 2),
                connect_timeout=10,
                read_timeout=60,
            ),
        )
        self._concurrency = concurrency
        self._fanout: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"S3BlockStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def key_of(self, block_id: BlockId) -> str:
        return f"{self.prefix}blocks/{block_id.hex()}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one S3 request with bounded, jittered retries of transient failures."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return fn()
            except ClientError as exc:
                transient = _code(exc) in _TRANSIENT or _status(exc) >= 500
                if not transient:
                    raise
                last: Exception = exc
            except BotoCoreError as exc:  # connection refused/reset, timeouts
                last = exc
            if attempt < self.max_attempts:
                time.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + self._rng.random()))
        raise StoreError(
            f"{what} failed after {self.max_attempts} attempts against {self}: {last}"
        ) from last

    def _head(self, block_id: BlockId) -> bool:
        key = self.key_of(block_id)
        try:
            self._call("HEAD", lambda: self._client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND or _status(exc) == 404:
                return False
            raise _client_error(exc, f"checking block {block_id.hex()}") from exc
        return True

    def _has_many_sync(self, block_ids: list[BlockId]) -> set[BlockId]:
        # S3 has no batch HEAD: run the HEADs concurrently on a small pool of our own.
        if len(block_ids) == 1:
            return {b for b in block_ids if self._head(b)}
        if self._fanout is None:
            self._fanout = ThreadPoolExecutor(self._concurrency, thread_name_prefix="s3-has")
        found = self._fanout.map(self._head, block_ids)
        return {b for b, present in zip(block_ids, found, strict=True) if present}

    def _put_sync(self, block_id: BlockId, data: Buffer) -> bool:
        body = bytes(data)
        checksum = base64.b64encode(block_id).decode()
        key = self.key_of(block_id)
        try:
            self._call(
                "PUT",
                lambda: self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    IfNoneMatch="*",
                    ChecksumSHA256=checksum,
                ),
            )
        except ClientError as exc:
            if _code(exc) in _ALREADY_THERE or _status(exc) == 412:
                return False
            raise _client_error(exc, f"storing block {block_id.hex()}") from exc
        return True

    def _get_sync(self, block_id: BlockId) -> bytes:
        key = self.key_of(block_id)

        def fetch() -> bytes:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            return bytes(response["Body"].read())

        try:
            data = self._call("GET", fetch)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND or _status(exc) == 404:
                raise BlockNotFoundError(block_id.hex(), str(self)) from None
            raise _client_error(exc, f"reading block {block_id.hex()}") from exc
        verify_block_id(block_id, data)
        return data

    def _iter_ids_sync(self) -> Iterator[BlockId]:
        start = f"{self.prefix}blocks/"
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(start) :]
                    try:
                        block_id = parse_block_id(name)
                    except StorageError:  # a foreign object under our prefix
                        continue
                    yield block_id
        except ClientError as exc:
            raise _client_error(exc, "listing blocks") from exc
        except BotoCoreError as exc:
            raise StoreError(f"listing blocks in {self} failed: {exc}") from exc

    def _close_sync(self) -> None:
        if self._fanout is not None:
            self._fanout.shutdown(wait=True)
            self._fanout = None
        self._client.close()


def _client_error(exc: ClientError, what: str) -> StoreError:
    return StoreError(f"S3 refused {what}: {_code(exc) or _status(exc)} {exc}")
