"""Creating a share is idempotent for its own genesis, and refused for any other."""

from __future__ import annotations

import hashlib

from protocol.chain import make_genesis

from .conftest import RelayUnderTest
from .helpers import NOW_MS, login, new_device


async def test_the_same_genesis_again_answers_the_same_share(relay: RelayUnderTest) -> None:
    api = relay.api
    owner, other = new_device(), new_device()
    assert (await login(api, owner)).status == 200
    assert (await login(api, other)).status == 200
    share_id = bytes(range(16))
    genesis = make_genesis(owner.certified, share_id, hashlib.sha256(b"e0").digest(), NOW_MS)

    first = await api.call("POST", "/v1/shares", {"genesis": genesis.encode()}, token=owner.token)
    # The answer was lost; the device sends the very same request again.
    again = await api.call("POST", "/v1/shares", {"genesis": genesis.encode()}, token=owner.token)
    assert first.status == again.status == 201
    assert first.body["share"] == again.body["share"] == share_id.hex()

    # Another genesis for the same share id, even from the same owner, is refused.
    later = make_genesis(owner.certified, share_id, hashlib.sha256(b"e0").digest(), NOW_MS + 1)
    refused = await api.call("POST", "/v1/shares", {"genesis": later.encode()}, token=owner.token)
    assert refused.status == 409
    assert refused.code == "exists"
    stolen = make_genesis(other.certified, share_id, hashlib.sha256(b"e0").digest(), NOW_MS)
    refused = await api.call("POST", "/v1/shares", {"genesis": stolen.encode()}, token=other.token)
    assert refused.status == 409
    chain = await api.call("GET", f"/v1/shares/{share_id.hex()}/chain?from=0", token=owner.token)
    assert chain.body["entries"] == [genesis.encode()]
