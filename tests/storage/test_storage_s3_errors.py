"""S3 store behaviour the contract suite cannot show: retries, error mapping, no event-loop use."""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from storage.dirstore import DirectoryBlockStore
from storage.errors import BlockNotFoundError, StoreError
from storage.hashing import block_id_of
from storage.s3store import S3BlockStore

DATA = b"a sealed block, as far as S3 knows" * 100
BID = block_id_of(DATA)


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


class ScriptedClient:
    """A boto3 client stand-in whose put_object fails as scripted, then succeeds."""

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.puts: list[dict[str, Any]] = []

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        self.puts.append(kwargs)
        if self.failures:
            raise self.failures.pop(0)
        return {}

    def close(self) -> None:
        return None


def scripted_store(failures: list[Exception], attempts: int = 4) -> tuple[S3BlockStore, Any]:
    client = ScriptedClient(failures)
    store = S3BlockStore(
        "bucket", client=client, max_attempts=attempts, backoff_s=0.001, rng=random.Random(1)
    )
    return store, client


async def test_transient_failures_are_retried() -> None:
    store, client = scripted_store(
        [client_error("SlowDown", 503), EndpointConnectionError(endpoint_url="http://x")]
    )
    assert await store.put(BID, DATA) is True
    assert len(client.puts) == 3
    sent = client.puts[-1]
    assert sent["IfNoneMatch"] == "*"
    assert sent["ChecksumSHA256"]  # S3 verifies the upload itself


async def test_retries_are_bounded_and_end_in_store_error() -> None:
    store, client = scripted_store([client_error("InternalError", 500)] * 10, attempts=3)
    with pytest.raises(StoreError, match="after 3 attempts"):
        await store.put(BID, DATA)
    assert len(client.puts) == 3


async def test_existing_block_is_not_an_error_and_permanent_errors_are_not_retried() -> None:
    store, _ = scripted_store([client_error("PreconditionFailed", 412)])
    assert await store.put(BID, DATA) is False
    store, client = scripted_store([client_error("AccessDenied", 403)] * 5)
    with pytest.raises(StoreError, match="AccessDenied"):
        await store.put(BID, DATA)
    assert len(client.puts) == 1


async def test_unreachable_endpoint_is_a_store_error(aws_credentials: None, dead_port: int) -> None:
    store = S3BlockStore(
        "bucket",
        endpoint_url=f"http://127.0.0.1:{dead_port}",
        max_attempts=2,
        backoff_s=0.001,
    )
    with pytest.raises(StoreError, match="failed after 2 attempts"):
        await store.get(BID)
    await store.close()


async def test_missing_bucket_is_a_store_error(moto_endpoint: str, aws_credentials: None) -> None:
    store = S3BlockStore("no-such-bucket", endpoint_url=moto_endpoint, max_attempts=1)
    with pytest.raises(StoreError, match="NoSuchBucket"):
        await store.put(BID, DATA)
    await store.close()


async def test_objects_live_under_the_prefix(moto_endpoint: str, fresh_bucket: str) -> None:
    bucket = fresh_bucket
    one = S3BlockStore(bucket, prefix="one/", endpoint_url=moto_endpoint)
    two = S3BlockStore(bucket, prefix="two/", endpoint_url=moto_endpoint)
    await one.put(BID, DATA)
    assert await two.has_many([BID]) == set()
    with pytest.raises(BlockNotFoundError):
        await two.get(BID)
    assert [b async for b in one.iter_ids()] == [BID]
    await one.close()
    await two.close()


class InlineExecutor(Executor):
    """What a simulation passes: work runs at once, on the caller's thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


async def test_a_store_runs_on_an_injected_inline_executor(tmp_path: Path) -> None:
    store = DirectoryBlockStore(tmp_path, executor=InlineExecutor(), fsync=False)
    assert await store.put(BID, DATA) is True
    assert await store.get_many([BID]) == {BID: DATA}
    assert [b async for b in store.iter_ids()] == [BID]
    await store.close()
