"""Joining a share the user already belongs to, on another of the user's devices.

A device linked to a member's account needs no invite: its user is in the chain already. It
takes the share's keys from the relay's key-wrap mailbox, where an owner's device leaves a wrap
for every member device lacking the current epoch (see :mod:`peer.engine.rekey`); one wrap
carries every earlier epoch's key, so the device reads the whole history. A device holding the
user key (``drift init``'s or ``drift recover``'s) also opens the wrap addressed to its user.
"""

from __future__ import annotations

from pathlib import Path

from peer.device.config import DeviceConfig, ShareConfig
from peer.device.home import Home
from peer.device.identity import load_user
from peer.engine.rekey import fetch_ring
from peer.engine.shares import _check_folder, _fresh_chain, open_state
from peer.errors import ShareError, UsageError
from peer.remote.link import RelayLink
from protocol.keys import CertifiedDevice
from seams.statedb import FILE_STATE_DATABASES, StateDatabases

SHARE_ID_HEX = 32


def is_share_id(text: str) -> bool:
    return len(text) == SHARE_ID_HEX and all(c in "0123456789abcdef" for c in text)


async def join_own_share(
    home: Home,
    config: DeviceConfig,
    device: CertifiedDevice,
    link: RelayLink,
    share: str,
    folder: Path,
    *,
    databases: StateDatabases = FILE_STATE_DATABASES,
) -> str:
    if share in config.shares:
        raise UsageError(f"this device already syncs share {share} at {config.shares[share].path}")
    folder = _check_folder(home, folder)
    store = open_state(home, share, databases)
    try:
        chain = await _fresh_chain(link, store, share)
        if chain.role_at(device.certificate.user_id) is None:
            raise ShareError(
                "your user is not a member of this share",
                hint="ask its owner for an invite, then: drift share join INVITE-CODE PATH",
            )
        # After `drift recover` no owner device may be left to wrap for this one: the wrap to
        # the user, opened with the user key this device holds, serves instead.
        ring, why = await fetch_ring(link, share, device, chain, load_user(home))
        if ring is None:
            raise ShareError(
                f"this device has no key for the share yet: {why}",
                hint="an owner's device hands it out on its next sync pass (`drift run`, within "
                "a minute); then run this again",
            )
        store.set_epoch_keys(ring.epoch_keys)
    finally:
        store.close()
    config.shares[share] = ShareConfig(share, str(folder), folder.name)
    config.save(home.config)
    return share
