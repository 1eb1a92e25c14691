"""Every replica reaches the same verdict on an envelope, whenever it verifies it.

Random histories of writes and membership changes: envelopes written honestly (under the head,
its epoch, with the next counter) are accepted when written and still accepted by the final chain;
envelopes a removed, demoted or revoked device writes later while naming an old chain height are
refused by the final chain.
"""

from __future__ import annotations

import random

import pytest

from protocol.chain import (
    WRITERS,
    MembershipChain,
    Role,
    make_add_user,
    make_change_role,
    make_genesis,
    make_key_epoch,
    make_remove_user,
    make_revoke_device,
)
from protocol.envelope import Envelope, check_envelope_authority, seal_envelope
from protocol.errors import Forbidden, PastCutoff, Revoked
from protocol.keys import CertifiedDevice, DeviceIdentity, UserIdentity

NOW_MS = 1_764_000_000_000
KEY = bytes(32)


def _history(seed: int) -> None:
    rng = random.Random(seed)
    rand = rng.randbytes
    users = [UserIdentity.generate(rand) for _ in range(4)]
    devices = {
        u: [
            CertifiedDevice(d, users[u].certify(d.public_key, "d", NOW_MS))
            for d in (DeviceIdentity.generate(rand), DeviceIdentity.generate(rand))
        ]
        for u in range(4)
    }
    owner = devices[0][0]
    chain = MembershipChain(make_genesis(owner, bytes(16), bytes(32), NOW_MS))
    counters: dict[bytes, int] = {}
    last: dict[bytes, Envelope] = {}
    honest: list[tuple[Envelope, CertifiedDevice]] = []
    revoked: set[bytes] = set()

    def write(device: CertifiedDevice, height: int, epoch: int) -> Envelope:
        counter = counters.get(device.device_id, 0) + 1
        prev = last[device.device_id].envelope_hash if device.device_id in last else bytes(32)
        return seal_envelope(
            device.identity, share=bytes(16), epoch=epoch, height=height, counter=counter,
            prev=prev, seen={}, blocks=(), update=b"u", metadata_key=KEY, random_bytes=rand,
        )  # fmt: skip

    for _ in range(40):
        u = rng.randrange(1, 4)
        role = chain.role_at(users[u].user_id)
        action = rng.choice(["write", "write", "write", "add", "remove", "demote", "revoke", "key"])
        if action == "write" and role in WRITERS:
            device = rng.choice([d for d in devices[u] if d.device_id not in revoked] or [owner])
            env = write(device, chain.height, chain.epoch_at())
            check_envelope_authority(env, device.certificate, chain)
            counters[device.device_id] = env.header.counter
            last[device.device_id] = env
            honest.append((env, device))
        elif action == "add" and role is None:
            new_role = rng.choice([Role.EDITOR, Role.VIEWER, Role.OWNER])
            chain.append(make_add_user(chain, owner, users[u].public_key, new_role, NOW_MS))
        elif action in ("remove", "demote") and role is not None:
            cutoffs = (
                {d.device_id: counters.get(d.device_id, 0) for d in devices[u]}
                if role in WRITERS
                else {}
            )
            if action == "remove":
                entry = make_remove_user(chain, owner, users[u].public_key, cutoffs, NOW_MS)
            elif role in WRITERS:
                entry = make_change_role(
                    chain, owner, users[u].public_key, Role.VIEWER, NOW_MS, cutoffs
                )
            else:
                continue
            chain.append(entry)
            chain.append(make_key_epoch(chain, owner, rng.randbytes(32), NOW_MS))
        elif action == "revoke" and role is not None:
            device = rng.choice(devices[u])
            if device.device_id in revoked:
                continue
            revocation = users[u].revoke(device.device_id, NOW_MS)
            cutoff = counters.get(device.device_id, 0)
            chain.append(make_revoke_device(chain, owner, revocation, cutoff, NOW_MS))
            revoked.add(device.device_id)
        elif action == "key":
            chain.append(make_key_epoch(chain, owner, rng.randbytes(32), NOW_MS))

    # The final chain agrees with every verdict given at write time.
    for env, device in honest:
        check_envelope_authority(env, device.certificate, chain)
    # A device writing on while naming the height its user last could write at is refused, if
    # its user lost the right (or it was revoked) since.
    for env, device in honest:
        if last[device.device_id] is not env:
            continue
        user_id = device.certificate.user_id
        still_writer = chain.role_at(user_id) in WRITERS and device.device_id not in revoked
        late = write(device, env.header.height, env.header.epoch)
        if still_writer and all(
            chain.role_at(user_id, h) in WRITERS for h in range(env.header.height, chain.height + 1)
        ):
            check_envelope_authority(late, device.certificate, chain)
        else:
            with pytest.raises((PastCutoff, Revoked, Forbidden)):
                check_envelope_authority(late, device.certificate, chain)


@pytest.mark.parametrize("seed", range(12))
def test_verdicts_do_not_depend_on_when_a_replica_verifies(
    seed: int, request: pytest.FixtureRequest
) -> None:
    chosen = request.config.getoption("--seed")
    _history(seed if chosen is None else chosen)
