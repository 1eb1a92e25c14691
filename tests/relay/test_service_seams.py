"""The transport-independent service under simulation seams: in-memory SQLite on the loop, an
inline executor and seeded randomness; no HTTP, no threads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from protocol.auth import answer_challenge
from protocol.chain import make_genesis
from relay.blocks import BlockAccess
from relay.db.sqlite import MemoryDatabase
from relay.envelopes import ForwardedEnvelope
from relay.errors import NotMember
from relay.notify import LocalNotifier
from relay.service import RelayService
from relay.settings import JwtKey, Settings
from relay.tokens import TokenAuthority
from seams import InlineExecutor, SeededRandom, SystemClock
from storage.dirstore import DirectoryBlockStore

from .helpers import NOW_MS, block, new_device


@pytest.fixture
async def service(tmp_path: Path) -> RelayService:
    executor = InlineExecutor()
    settings = Settings(data_dir=tmp_path, jwt_keys=(JwtKey("sim", b"s" * 32),)).validate()
    db = await MemoryDatabase().open()
    return RelayService(
        settings=settings,
        db=db,
        blocks=BlockAccess(
            DirectoryBlockStore(tmp_path / "blocks", fsync=False, executor=executor.as_pool()),
            executor,
        ),
        notifier=LocalNotifier(),
        tokens=TokenAuthority(settings.jwt_keys, "sim://relay", 600),
        clock=SystemClock(),
        rng=SeededRandom(7),
        executor=executor,
    )


async def test_service_without_http(service: RelayService) -> None:
    owner, stranger = new_device(), new_device()
    principals = []
    for device in (owner, stranger):
        challenge = await service.challenge()
        response = answer_challenge(
            device.certified, challenge.origin, challenge.server_nonce, time.time_ns() // 10**6
        )
        issued = await service.login(response.encode(), register=True)
        principals.append(await service.authenticate(issued.token))
    me, them = principals

    share_id = bytes(range(16))
    genesis = make_genesis(owner.certified, share_id, b"\x01" * 32, NOW_MS)
    assert await service.create_share(me, genesis.encode()) == share_id.hex()
    sub = service.subscribe([share_id.hex()])
    env = owner.next_envelope(share_id, b"k" * 32)
    result = await service.append(me, share_id.hex(), [ForwardedEnvelope(env)])
    assert result.seqs == (1,)
    assert await sub.wait(1) == {share_id.hex(): 1}
    page = await service.read_log(me, share_id.hex(), 0, 10)
    assert [e.body for e in page.entries] == [env]
    assert page.more is False
    bid, data = block(b"sealed" * 100)
    assert await service.put_blocks(me, share_id.hex(), [(bid, data)]) == 1
    assert await service.get_blocks(me, share_id.hex(), [bid]) == {bid: data}

    with pytest.raises(NotMember):
        await service.read_log(them, share_id.hex(), 0, 10)
    with pytest.raises(NotMember):
        await service.put_blocks(them, share_id.hex(), [(bid, data)])
