"""A small relay client and protocol actors for end-to-end tests over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from protocol.auth import AuthChallenge, answer_challenge
from protocol.chain import (
    ChainEntry,
    MembershipChain,
    Role,
    make_add_user,
    make_genesis,
    make_remove_user,
)
from protocol.codec import pack, unpack
from protocol.envelope import seal_envelope
from protocol.keys import CertifiedDevice, DeviceIdentity, UserIdentity

NOW_MS = 1_800_000_000_000


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any = None

    @property
    def code(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        allow_redirects: bool = True,
    ) -> Answer:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (pack(body) if body is not None else None)
        async with self.session.request(
            method, self.base + path, data=data, headers=headers, allow_redirects=allow_redirects
        ) as resp:
            payload = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            decoded: Any = payload
            if ctype.startswith("application/msgpack") and payload:
                decoded = unpack(payload)
            elif ctype.startswith("application/json"):
                decoded = await resp.json()
            return Answer(resp.status, decoded, resp.headers)


@dataclass
class Device:
    user: UserIdentity
    certified: CertifiedDevice
    token: str = ""
    counter: int = 0
    prev: bytes = bytes(32)

    @property
    def device_id(self) -> bytes:
        return self.certified.device_id

    @property
    def hex(self) -> str:
        return self.certified.device_id.hex()

    def next_envelope(
        self,
        share: bytes,
        key: bytes,
        *,
        height: int = 0,
        seen: dict[bytes, int] | None = None,
        blocks: tuple[bytes, ...] = (),
        update: bytes = b"update",
        advance: bool = True,
    ) -> bytes:
        env = seal_envelope(
            self.certified.identity,
            share=share,
            epoch=0,
            height=height,
            counter=self.counter + 1,
            prev=self.prev,
            seen=seen or {},
            blocks=blocks,
            update=update,
            metadata_key=key,
        )
        if advance:
            self.counter += 1
            self.prev = env.envelope_hash
        return env.encode()

    def accepted(self, envelope: bytes) -> None:
        """Advance past an envelope made with ``advance=False`` once the relay took it."""
        from protocol.envelope import Envelope

        self.counter += 1
        self.prev = Envelope.decode(envelope).envelope_hash


def new_device(user: UserIdentity | None = None, name: str = "laptop") -> Device:
    user = user or UserIdentity.generate()
    identity = DeviceIdentity.generate()
    cert = user.certify(identity.public_key, name, NOW_MS)
    return Device(user, CertifiedDevice(identity, cert))


async def login(
    api: Api,
    device: Device,
    *,
    register: bool = True,
    invite: str | None = None,
    origin: str | None = None,
) -> Answer:
    got = await api.call("POST", "/v1/auth/challenge")
    challenge = AuthChallenge.decode(got.body["challenge"])
    response = answer_challenge(
        device.certified,
        origin or challenge.origin,
        challenge.server_nonce,
        time.time_ns() // 10**6,
    )
    body: dict[str, Any] = {"response": response.encode(), "register": register}
    if invite is not None:
        body["invite"] = invite
    answer = await api.call("POST", "/v1/auth/token", body)
    if answer.status == 200:
        device.token = answer.body["token"]
    return answer


@dataclass
class Share:
    share_id: bytes
    owner: Device
    chain: MembershipChain
    key: bytes = field(default_factory=lambda: os.urandom(32))

    @property
    def hex(self) -> str:
        return self.share_id.hex()

    @property
    def path(self) -> str:
        return f"/v1/shares/{self.share_id.hex()}"


async def create_share(api: Api, owner: Device) -> Share:
    share_id = os.urandom(16)
    genesis = make_genesis(owner.certified, share_id, hashlib.sha256(b"epoch0").digest(), NOW_MS)
    answer = await api.call("POST", "/v1/shares", {"genesis": genesis.encode()}, token=owner.token)
    assert answer.status == 201, answer.body
    return Share(share_id, owner, MembershipChain(genesis))


async def extend(api: Api, share: Share, entry: ChainEntry, signer: Device) -> Answer:
    answer = await api.call(
        "POST", f"{share.path}/chain", {"entry": entry.encode()}, token=signer.token
    )
    if answer.status == 200:
        share.chain.append(entry)
    return answer


async def add_member(api: Api, share: Share, member: Device, role: Role) -> None:
    entry = make_add_user(share.chain, share.owner.certified, member.user.public_key, role, NOW_MS)
    answer = await extend(api, share, entry, share.owner)
    assert answer.status == 200, answer.body


async def remove_member(api: Api, share: Share, member: Device, cutoff: int) -> None:
    entry = make_remove_user(
        share.chain,
        share.owner.certified,
        member.user.public_key,
        {member.device_id: cutoff},
        NOW_MS,
    )
    answer = await extend(api, share, entry, share.owner)
    assert answer.status == 200, answer.body


async def publish(
    api: Api,
    share: Share,
    device: Device,
    *envelopes: bytes,
    as_device: Device | None = None,
    with_cert: bool = False,
) -> Answer:
    items: list[dict[str, Any]] = []
    for env in envelopes:
        item: dict[str, Any] = {"envelope": env}
        if with_cert:
            item["certificate"] = device.certified.certificate.encode()
        items.append(item)
    caller = as_device or device
    return await api.call(
        "POST", f"{share.path}/envelopes", {"envelopes": items}, token=caller.token
    )


def block(data: bytes) -> tuple[bytes, bytes]:
    return hashlib.sha256(data).digest(), data


def make_add_user_entry(share: Share, signer: Device, user_key: bytes) -> ChainEntry:
    return make_add_user(share.chain, signer.certified, user_key, Role.VIEWER, NOW_MS)


class Inbox:
    """Reads a WebSocket continuously, as a device does (reading is what answers the relay's
    pings: a test that stops reading would be dropped as a dead peer), and queues what came."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await self.queue.put(unpack(msg.data))
        await self.queue.put(None)

    async def next(self) -> dict[str, Any] | None:
        """The next message (within 15 s), or None once the socket has closed."""
        return await asyncio.wait_for(self.queue.get(), 15)

    async def close(self) -> None:
        await self.ws.close()
        await self.task
