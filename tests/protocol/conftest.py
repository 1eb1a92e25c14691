"""A small world of users, devices and one share, built from a seed, for protocol tests.

pytest runs with ``--import-mode=importlib``, so helpers reach the tests as fixtures.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest

from protocol.auth import answer_challenge, make_challenge
from protocol.chain import MembershipChain, Role, make_add_user, make_genesis, make_key_epoch
from protocol.envelope import Envelope, seal_envelope
from protocol.errors import CounterGap
from protocol.invite import make_invite
from protocol.keys import CertifiedDevice, DeviceIdentity, UserIdentity
from protocol.keyschedule import KeyRing, new_share_id, wrap_keys
from protocol.linking import (
    CHEAP_KDF,
    accept_link_request,
    link_secrets,
    make_link_request,
    new_link_code,
)
from protocol.messages import (
    AuthChallengeMsg,
    AuthOk,
    AuthResponseMsg,
    BlockData,
    ChainAppend,
    ChainEntries,
    ChainGet,
    ChainHead,
    DeviceCertificates,
    EnvelopeAck,
    Envelopes,
    ErrorMsg,
    GetEnvelopes,
    HaveBlocks,
    HaveBlocksReply,
    Heartbeat,
    Hello,
    KeyWraps,
    LinkGrantMsg,
    LinkRequestMsg,
    Message,
    Notify,
    PushEnvelopes,
    RecoveryBlobMsg,
    RevokeDevice,
    SequencedEnvelope,
    Subscribe,
    WantBlocks,
    Welcome,
)
from protocol.recovery import new_recovery_code, wrap_user_key
from protocol.signing import RandomBytes
from protocol.vv import VersionVector

NOW_MS = 1_764_000_000_000


def seeded_random(seed: int) -> RandomBytes:
    return random.Random(seed).randbytes


def certified(user: UserIdentity, rand: RandomBytes, name: str) -> CertifiedDevice:
    device = DeviceIdentity.generate(rand)
    return CertifiedDevice(device, user.certify(device.public_key, name, NOW_MS))


@dataclasses.dataclass
class World:
    rand: RandomBytes
    owner: UserIdentity
    owner_laptop: CertifiedDevice
    editor: UserIdentity
    editor_phone: CertifiedDevice
    viewer: UserIdentity
    viewer_tablet: CertifiedDevice
    outsider: UserIdentity
    outsider_pc: CertifiedDevice
    share_id: bytes
    ring: KeyRing
    chain: MembershipChain

    @classmethod
    def build(cls, seed: int = 1) -> World:
        rand = seeded_random(seed)
        owner, editor, viewer, outsider = (UserIdentity.generate(rand) for _ in range(4))
        owner_laptop = certified(owner, rand, "laptop")
        editor_phone = certified(editor, rand, "phone")
        viewer_tablet = certified(viewer, rand, "tablet")
        outsider_pc = certified(outsider, rand, "pc")
        share_id = new_share_id(rand)
        ring = KeyRing.create(share_id, rand)
        chain = MembershipChain(
            make_genesis(owner_laptop, share_id, ring.epoch(0).key_hash, NOW_MS)
        )
        chain.append(make_add_user(chain, owner_laptop, editor.public_key, Role.EDITOR, NOW_MS))
        chain.append(make_add_user(chain, owner_laptop, viewer.public_key, Role.VIEWER, NOW_MS))
        return cls(
            rand,
            owner,
            owner_laptop,
            editor,
            editor_phone,
            viewer,
            viewer_tablet,
            outsider,
            outsider_pc,
            share_id,
            ring,
            chain,
        )

    def envelope(
        self,
        device: CertifiedDevice,
        counter: int = 1,
        prev: Envelope | None = None,
        *,
        update: bytes = b"update",
        epoch: int | None = None,
        height: int | None = None,
        blocks: tuple[bytes, ...] = (),
    ) -> Envelope:
        epoch = self.chain.epoch_at() if epoch is None else epoch
        key = self.ring.epoch(min(epoch, self.ring.latest_epoch)).metadata_key
        return seal_envelope(
            device.identity,
            share=self.share_id,
            epoch=epoch,
            height=self.chain.height if height is None else height,
            counter=counter,
            prev=bytes(32) if prev is None else prev.envelope_hash,
            seen={device.device_id: counter - 1} if counter > 1 else {},
            blocks=blocks,
            update=update,
            metadata_key=key,
            random_bytes=self.rand,
        )


def build_sample_messages(world: World, now_ms: int = NOW_MS) -> list[Message]:
    """One message of every type, built from real keys, chain entries and envelopes."""
    share = world.share_id
    env1 = world.envelope(world.editor_phone, 1, blocks=(bytes(32), b"\x01" * 32))
    env2 = world.envelope(world.editor_phone, 2, env1)
    challenge = make_challenge("https://relay.example.org", now_ms, world.rand)
    response = answer_challenge(
        world.editor_phone, challenge.origin, challenge.server_nonce, now_ms, world.rand
    )
    code_secrets = link_secrets(new_link_code(world.rand), CHEAP_KDF)
    request = make_link_request(code_secrets, world.outsider_pc.identity, "pc", now_ms)
    grant = accept_link_request(code_secrets, request, world.outsider, now_ms)
    blob = wrap_user_key(world.owner, new_recovery_code(world.rand), world.rand)
    wrap = wrap_keys(world.ring, world.owner_laptop.identity, world.editor_phone.certificate)
    entry = make_key_epoch(world.chain, world.owner_laptop, bytes(32), now_ms)
    return [
        Hello(min_version=1, max_version=1, agent="drift/0.1"),
        Welcome(version=1, agent="relay/0.1"),
        AuthChallengeMsg(challenge=challenge),
        AuthResponseMsg(response=response),
        AuthOk(token="eyJ.token", expires_ms=now_ms + 3600_000),
        ErrorMsg.from_error(CounterGap("counter skips ahead", have=41)),
        Heartbeat(time_ms=now_ms, latest=((share, 7),)),
        DeviceCertificates(certificates=(world.owner_laptop.certificate,)),
        RevokeDevice(revocation=world.editor.revoke(world.editor_phone.device_id, now_ms)),
        LinkRequestMsg(request=request),
        LinkGrantMsg(grant=grant),
        RecoveryBlobMsg(blob=blob),
        ChainHead(share=share, height=world.chain.height, head_hash=world.chain.head_hash),
        ChainGet(share=share, since_height=1),
        ChainEntries(share=share, entries=tuple(world.chain.entries)),
        ChainAppend(entry=entry),
        KeyWraps(wraps=(wrap,)),
        HaveBlocks(share=share, block_ids=(bytes(32),)),
        HaveBlocksReply(share=share, present=(bytes(32),), missing=(b"\x02" * 32,)),
        WantBlocks(share=share, block_ids=(b"\x04" * 32, b"\x05" * 32)),
        BlockData(share=share, block_id=b"\x03" * 32, data=b"sealed block"),
        PushEnvelopes(envelopes=(env1, env2)),
        EnvelopeAck(share=share, device=world.editor_phone.device_id, counter=2, seq=9),
        GetEnvelopes(share=share, since_seq=3),
        GetEnvelopes(share=share, have=VersionVector({world.editor_phone.device_id: 1})),
        Envelopes(
            share=share,
            items=(SequencedEnvelope(1, env1), SequencedEnvelope(2, env2)),
            more=False,
        ),
        Subscribe(shares=(share,)),
        Notify(share=share, seq=12),
    ]


@pytest.fixture
def world() -> World:
    return World.build(1)


@pytest.fixture(scope="session")
def make_world() -> Callable[[int], World]:
    return World.build


@pytest.fixture
def sample_messages(world: World) -> list[Message]:
    return build_sample_messages(world)


@pytest.fixture(scope="session")
def sample_encodings() -> dict[str, bytes]:
    """Wire bytes of every message type and every standalone signed record (for fuzzing)."""
    world = World.build(11)
    out: dict[str, bytes] = {}
    for message in build_sample_messages(world):
        out.setdefault(message.TYPE, message.encode())
    out["certificate"] = world.owner_laptop.certificate.encode()
    out["chain_entry"] = world.chain.entries[-1].encode()
    out["envelope"] = world.envelope(world.editor_phone).encode()
    out["invite"] = make_invite(
        world.chain, "https://r.example", world.owner_laptop.device_id
    ).encode()
    return out


@pytest.fixture
def seeded() -> Callable[[int], RandomBytes]:
    return seeded_random


@pytest.fixture
def now_ms() -> int:
    return NOW_MS
