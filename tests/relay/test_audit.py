"""`drift relay audit`: finds damaged, missing and unaccounted blocks; reports, never deletes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest

from relay.audit import audit
from relay.cli import main
from relay.http.context import SERVICE
from storage.dirstore import DirectoryBlockStore
from storage.hashing import BlockId

from .conftest import RelayUnderTest
from .helpers import block, create_share, login, new_device, publish


def _damage(relay: RelayUnderTest, block_id: bytes, data: bytes | None) -> None:
    """Overwrite a stored block with other bytes (``data``) or remove it (None), behind the
    relay's back, as a failing disk or a bad restore would."""
    store = relay.app[SERVICE].blocks.store
    if isinstance(store, DirectoryBlockStore):
        path = store.path_of(BlockId(block_id))
        if data is None:
            path.unlink()
        else:
            path.write_bytes(data)
        return
    parts = urlsplit(relay.settings.blocks_url or "")
    client = boto3.client(
        "s3",
        endpoint_url=relay.settings.s3_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    key = f"{parts.path.strip('/')}/blocks/{block_id.hex()}"
    if data is None:
        client.delete_object(Bucket=parts.netloc, Key=key)
    else:
        client.put_object(Bucket=parts.netloc, Key=key, Body=data)


async def test_audit_reports_what_is_wrong_and_changes_nothing(
    relay: RelayUnderTest, request: pytest.FixtureRequest
) -> None:
    api, service = relay.api, relay.app[SERVICE]
    owner = new_device()
    await login(api, owner)
    share = await create_share(api, owner)
    blocks = [block(f"sealed block {i}".encode() * 100) for i in range(4)]
    put = await api.call(
        "POST", f"{share.path}/blocks/put", {"blocks": [list(b) for b in blocks]}, token=owner.token
    )
    assert put.status == 200
    owed_id, _ = block(b"never uploaded")
    env = owner.next_envelope(
        share.share_id, share.key, blocks=(blocks[0][0], blocks[1][0], owed_id)
    )
    assert (await publish(api, share, owner, env)).status == 200

    clean = await audit(service.db, service.blocks.store)
    assert clean.clean, clean.to_json()
    assert (clean.blocks_checked, clean.share_blocks_checked) == (4, 4)
    assert (clean.envelopes_checked, clean.references_checked, clean.owed) == (1, 3, 1)

    _damage(relay, blocks[1][0], b"bit rot" * 10)
    _damage(relay, blocks[2][0], None)
    async with service.db.write() as tx:  # the owed record lost, as a partial restore would
        await tx.execute("DELETE FROM owed_blocks WHERE share_id = ?", share.hex)

    found = await audit(service.db, service.blocks.store)
    assert not found.clean
    assert [f["block"] for f in found.corrupt.listed] == [blocks[1][0].hex()]
    assert [f["block"] for f in found.missing.listed] == [blocks[2][0].hex()]
    assert found.unaccounted.listed == [{"share": share.hex, "seq": 1, "block": owed_id.hex()}]
    # Reported, not repaired: the damaged block is still there, still damaged.
    assert blocks[1][0] in await service.blocks.store.has_many([BlockId(blocks[1][0])])
    again = await audit(service.db, service.blocks.store)
    assert again.to_json() == found.to_json()

    if request.node.callspec.params["relay"] == "sqlite+dir":
        # The command, on the same data directory (SQLite reads alongside the running relay).
        code = await asyncio.to_thread(
            main, ["audit", "--data-dir", str(relay.settings.data_dir), "--json"]
        )
        assert code == 3


def test_audit_command_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An empty relay audits clean; the report is JSON a script can read.
    assert main(["audit", "--data-dir", str(tmp_path / "fresh"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] is True
    assert report["corrupt"] == {"count": 0, "listed": []}
    assert main(["audit", "--data-dir", str(tmp_path / "fresh")]) == 0
    assert "clean" in capsys.readouterr().out
