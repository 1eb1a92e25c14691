"""A small world of users, devices and one share, built from a seed, for protocol tests.

pytest runs with ``--import-mode=importlib``, so helpers reach the tests as fixtures.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest

from protocol.chain import MembershipChain, Role, make_add_user, make_genesis
from protocol.envelope import Envelope, seal_envelope
from protocol.keys import CertifiedDevice, DeviceIdentity, UserIdentity
from protocol.keyschedule import KeyRing, new_share_id
from protocol.signing import RandomBytes

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


@pytest.fixture
def world() -> World:
    return World.build(1)


@pytest.fixture
def make_world() -> Callable[[int], World]:
    return World.build


@pytest.fixture
def seeded() -> Callable[[int], RandomBytes]:
    return seeded_random


@pytest.fixture
def now_ms() -> int:
    return NOW_MS
