"""Fixtures for the storage tests: keys, small chunking parameters, and stores of every kind."""

from __future__ import annotations

import hashlib
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest

from storage.blockstore import BlockStore
from storage.chunking import ChunkingParams
from storage.dirstore import DirectoryBlockStore
from storage.keys import Keyring, SealingKey, ShareKeys
from storage.s3store import S3BlockStore

# Small chunks keep randomized tests fast while exercising the same code paths.
SMALL_CHUNKS = ChunkingParams(min_size=256, avg_size=1024, max_size=4096)


def secret(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def make_share(name: str = "share-a") -> ShareKeys:
    return ShareKeys(name.encode(), secret(f"{name}/chunking"), secret(f"{name}/chunk-id"))


@pytest.fixture
def share() -> ShareKeys:
    return make_share("share-a")


@pytest.fixture
def other_share() -> ShareKeys:
    return make_share("share-b")


@pytest.fixture
def key() -> SealingKey:
    return SealingKey(1, secret("share-a/epoch-1"))


@pytest.fixture
def keyring(key: SealingKey) -> Keyring:
    return Keyring([key, SealingKey(2, secret("share-a/epoch-2"))])


@pytest.fixture
def dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fresh_bucket(moto_endpoint: str, aws_credentials: None) -> str:
    """A new, empty bucket on the session's moto_server."""
    return new_bucket(moto_endpoint)


def new_bucket(endpoint: str) -> str:
    name = f"test-{uuid.uuid4().hex[:16]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=name)
    client.close()
    return name


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(params=["dir", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, aws_credentials: None
) -> AsyncIterator[BlockStore]:
    """A fresh, empty block store: a local directory, then S3 on a real moto_server."""
    if request.param == "dir":
        made: BlockStore = DirectoryBlockStore(tmp_path / "blocks", fsync=False)
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        made = S3BlockStore(new_bucket(endpoint), prefix="t/", endpoint_url=endpoint)
    yield made
    await made.close()


@pytest.fixture
async def dir_store(tmp_path: Path) -> AsyncIterator[DirectoryBlockStore]:
    made = DirectoryBlockStore(tmp_path / "blocks", fsync=False)
    yield made
    await made.close()
