"""Key rotation on removal and revocation, end to end with a real relay on loopback.

After a member is removed the share's keys rotate: nothing written afterwards opens with the keys
the removed device holds (envelopes and blocks alike, even if it gets the bytes through a leak),
while the remaining members keep syncing both ways across the rotation. A wrap the relay serves
that was not made by an owner's device, or an old wrap served again, is refused with a reason
the device shows in its status.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from peer.device.identity import load_user
from peer.device.store import ShareStore
from peer.engine.shares import CUTOFF_TRIES, remove_member, revoke_in_shares, state_path
from peer.errors import RelayRefused
from peer.remote.link import RelayLink
from protocol.chain import ChainEntry
from protocol.envelope import Envelope, open_envelope
from protocol.errors import BadKey
from protocol.keyschedule import KeyRing, wrap_keys
from seams import SystemClock
from seams.random import OsRandom
from storage.errors import StorageError
from storage.keys import Keyring, SealingKey
from storage.sealing import BlockType, open_block, parse_header
from tests.peer_sync.harness import (
    Dev,
    make_device,
    running_relay,
    second_device,
    settle,
    share_between,
)


def _ring(dev: Dev, share: str) -> KeyRing:
    store = ShareStore(state_path(dev.home, share))
    try:
        return KeyRing(bytes.fromhex(share), tuple(store.epoch_keys()))
    finally:
        store.close()


async def _log_since(dev: Dev, share: str, seq: int) -> list[Envelope]:
    page = await dev.node.link.read_log(share, seq)
    return [Envelope.decode(entry[1]) for entry in page.entries]


def _mailbox(relay_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(relay_dir / "relay.db", isolation_level=None)


async def test_after_removal_new_writes_do_not_open_for_the_removed(tmp_path: Path) -> None:
    relay_dir = tmp_path / "relay"
    async with running_relay(relay_dir) as url:
        owner = make_device(tmp_path, "owner", url)
        editor = make_device(tmp_path, "editor", url)
        gone = make_device(tmp_path, "gone", url)
        devices = [owner, editor, gone]
        try:
            share = await share_between(owner, editor, gone)
            (owner.folder / "before.txt").write_bytes(b"shared while a member")
            await settle(devices)
            assert gone.files()["before.txt"] == b"shared while a member"
            seq_before = owner.node.syncs[share].replica.cursor

            done = await remove_member(
                owner.home,
                owner.node.device,
                owner.node.link,
                share,
                gone.user_key,
                clock=SystemClock(),
                rng=OsRandom(),
            )
            assert done.rotation is not None
            assert (done.rotation.epoch, done.rotation.wrapped) == (1, 1)  # the editor's device
            assert done.rotation.users == 2  # the owner's and the editor's users, not the removed

            (owner.folder / "after.txt").write_bytes(b"secret " * 5000)
            await owner.sync()
            (editor.folder / "reply.txt").write_bytes(b"from the editor, after the rotation")
            await settle([editor, owner, editor])
            assert owner.files()["reply.txt"] == b"from the editor, after the rotation"
            assert editor.files()["after.txt"] == b"secret " * 5000
            assert _ring(owner, share).latest_epoch == _ring(editor, share).latest_epoch == 1

            with pytest.raises(RelayRefused) as refused:
                await gone.sync()
            assert refused.value.code == "not_member"

            # Suppose every byte written since leaks to the removed device anyway.
            leaked = await _log_since(owner, share, seq_before)
            assert leaked
            assert {e.header.epoch for e in leaked} == {1}
            held = _ring(gone, share)
            assert held.latest_epoch == 0
            metadata_keys = [held.epoch(e).metadata_key for e in range(held.latest_epoch + 1)]
            sealing_keys = [held.epoch(e).sealing_key for e in range(held.latest_epoch + 1)]
            for envelope in leaked:
                for key in metadata_keys:
                    with pytest.raises(BadKey):
                        open_envelope(envelope, key)
            block_ids = {b for e in leaked for b in e.header.blocks}
            assert block_ids
            blocks = await owner.node.link.get_blocks(share, sorted(block_ids))
            share_keys = gone.node.share(share).replica.crypto.share_keys
            for sealed in blocks.values():
                epoch = parse_header(sealed).epoch
                assert epoch == 1
                for key in sealing_keys:
                    ring = Keyring([SealingKey(epoch, key)])
                    for kind in BlockType:
                        with pytest.raises(StorageError):
                            open_block(share_keys, ring, sealed, expected_type=kind)
            assert "after.txt" not in gone.files()
        finally:
            for dev in devices:
                await dev.node.close()


async def test_a_removal_keeps_what_the_relay_holds_of_a_device_the_owner_never_heard_from(
    tmp_path: Path,
) -> None:
    """The owner removes a user one of whose devices wrote only since the owner's last read:
    the cutoff is what the relay holds of that device, so every device keeps its envelopes,
    those that applied them before the removal and the owner alike (simulation seed 330)."""
    relay_dir = tmp_path / "relay"
    async with running_relay(relay_dir) as url:
        owner = make_device(tmp_path, "owner", url)
        editor = make_device(tmp_path, "editor", url)
        gone = make_device(tmp_path, "gone", url)
        devices = [owner, editor, gone]
        try:
            share = await share_between(owner, editor, gone)
            await settle([owner, editor])
            (gone.folder / "late.txt").write_bytes(b"written before the removal")
            await gone.sync()
            await editor.sync()  # applies it before it hears of the removal
            assert editor.files()["late.txt"] == b"written before the removal"

            done = await remove_member(
                owner.home,
                owner.node.device,
                owner.node.link,
                share,
                gone.user_key,
                clock=SystemClock(),
                rng=OsRandom(),
            )
            # The cutoff is what the relay holds of that device (not 0: every device that heard
            # of the removal would refuse what the others applied before they did).
            raw = (await owner.node.link.chain(share, done.height))[0]
            gone_device = gone.node.device.device_id
            assert ChainEntry.decode(raw).cutoffs == {gone_device: 1}
            await settle([owner, editor])
            assert owner.files()["late.txt"] == b"written before the removal"
            assert editor.files()["late.txt"] == b"written before the removal"
        finally:
            for dev in devices:
                await dev.node.close()


class _RacingLink:
    """The owner's link, with something run just before each chain extension is sent: after
    the cutoffs were read from the relay's vector, before the entry lands."""

    def __init__(self, link: RelayLink, before_extend: Callable[[], Awaitable[None]]) -> None:
        self._link = link
        self._before_extend = before_extend
        self.refused: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._link, name)

    async def extend_chain(self, share: str, entry: bytes) -> int:
        await self._before_extend()
        try:
            return await self._link.extend_chain(share, entry)
        except RelayRefused as exc:
            self.refused.append(exc.code)
            raise


async def test_a_removal_raced_by_the_removed_device_is_made_again_from_the_log(
    tmp_path: Path,
) -> None:
    """The removed user's device appends after the owner read the relay's vector and before
    the removal lands: the relay refuses the stale cutoffs, the owner's device reads them again
    and the removal keeps the raced envelope, so every device ends with the same tree."""
    relay_dir = tmp_path / "relay"
    async with running_relay(relay_dir) as url:
        owner = make_device(tmp_path, "owner", url)
        editor = make_device(tmp_path, "editor", url)
        gone = make_device(tmp_path, "gone", url)
        devices = [owner, editor, gone]
        try:
            share = await share_between(owner, editor, gone)
            (gone.folder / "early.txt").write_bytes(b"before the removal began")
            await settle(devices)
            raced = False

            async def gone_writes_once() -> None:
                nonlocal raced
                if raced:
                    return
                raced = True
                (gone.folder / "raced.txt").write_bytes(b"written while the removal was signed")
                await gone.sync()
                await editor.sync()  # applies it before it hears of the removal

            link = _RacingLink(owner.node.link, gone_writes_once)
            done = await remove_member(
                owner.home,
                owner.node.device,
                link,  # type: ignore[arg-type]
                share,
                gone.user_key,
                clock=SystemClock(),
                rng=OsRandom(),
            )
            assert link.refused == ["stale_cutoffs"]
            assert editor.files()["raced.txt"] == b"written while the removal was signed"
            gone_device = gone.node.device.device_id
            held = (await owner.node.link.server_vector(share))[gone_device.hex()]
            raw = (await owner.node.link.chain(share, done.height))[0]
            assert ChainEntry.decode(raw).cutoffs == {gone_device: held}
            assert done.rotation is not None

            await settle([owner, editor])
            assert owner.files()["raced.txt"] == b"written while the removal was signed"
            assert owner.files() == editor.files() == gone.files()
            with pytest.raises(RelayRefused) as refused:
                await gone.sync()
            assert refused.value.code == "not_member"
        finally:
            for dev in devices:
                await dev.node.close()


async def test_a_removal_raced_every_time_gives_up_after_a_few_tries(tmp_path: Path) -> None:
    relay_dir = tmp_path / "relay"
    async with running_relay(relay_dir) as url:
        owner = make_device(tmp_path, "owner", url)
        gone = make_device(tmp_path, "gone", url)
        devices = [owner, gone]
        try:
            share = await share_between(owner, gone)
            await settle(devices)
            writes = 0

            async def gone_writes() -> None:
                nonlocal writes
                writes += 1
                (gone.folder / f"w{writes}.txt").write_bytes(b"again")
                await gone.sync()

            link = _RacingLink(owner.node.link, gone_writes)
            with pytest.raises(RelayRefused) as refused:
                await remove_member(
                    owner.home,
                    owner.node.device,
                    link,  # type: ignore[arg-type]
                    share,
                    gone.user_key,
                    clock=SystemClock(),
                    rng=OsRandom(),
                )
            assert refused.value.code == "stale_cutoffs"
            assert refused.value.details["device"] == gone.node.device.device_id.hex()
            assert link.refused == ["stale_cutoffs"] * CUTOFF_TRIES
            # Nothing changed: the user is still a member and may sync.
            await gone.sync()
        finally:
            for dev in devices:
                await dev.node.close()


async def test_forged_and_replayed_wraps_are_refused_then_the_real_one_is_taken(
    tmp_path: Path,
) -> None:
    relay_dir = tmp_path / "relay"
    async with running_relay(relay_dir) as url:
        owner = make_device(tmp_path, "owner", url)
        editor = make_device(tmp_path, "editor", url)
        gone = make_device(tmp_path, "gone", url)
        devices = [owner, editor, gone]
        try:
            share = await share_between(owner, editor, gone)
            await settle(devices)
            old_ring = _ring(owner, share)
            replay = wrap_keys(old_ring, owner.node.device.identity, editor.node.device.certificate)
            await remove_member(
                owner.home,
                owner.node.device,
                owner.node.link,
                share,
                gone.user_key,
                clock=SystemClock(),
                rng=OsRandom(),
            )
            # The editor cannot hand out keys through the relay: only owners may leave wraps.
            own = wrap_keys(old_ring, editor.node.device.identity, owner.node.device.certificate)
            with pytest.raises(RelayRefused) as refused:
                await editor.node.link.put_key_wraps(share, [own.encode()])
            assert refused.value.code == "role"

            # A breached relay puts other wraps in the editor's mailbox instead of the owner's.
            db = _mailbox(relay_dir)
            recipient = editor.node.device.device_id.hex()
            real = db.execute(
                "SELECT sender, wrap FROM key_wraps "
                "WHERE share_id = ? AND recipient = ? AND epoch = 1",
                (share, recipient),
            ).fetchone()
            rogue = KeyRing(bytes.fromhex(share), (*old_ring.epoch_keys, bytes(32)))
            forged = wrap_keys(rogue, gone.node.device.identity, editor.node.device.certificate)
            attempts = [
                (
                    gone.node.device.device_id.hex(),
                    forged.encode(),
                    "not made by a device of an owner",
                ),
                (owner.node.device.device_id.hex(), replay.encode(), "an old wrap sent again"),
            ]
            for sender, wrap, why in attempts:
                db.execute(
                    "UPDATE key_wraps SET sender = ?, wrap = ? "
                    "WHERE share_id = ? AND recipient = ? AND epoch = 1",
                    (sender, wrap, share, recipient),
                )
                await editor.sync()
                status = editor.node.status(share)
                assert why in status.reason, status.reason
                assert _ring(editor, share).latest_epoch == 0
                (editor.folder / "waiting.txt").write_bytes(b"written while waiting")
                await editor.sync()
                assert not editor.node.syncs[share].store.outbox()  # nothing sealed meanwhile

            db.execute(
                "UPDATE key_wraps SET sender = ?, wrap = ? "
                "WHERE share_id = ? AND recipient = ? AND epoch = 1",
                (*real, share, recipient),
            )
            db.close()
            await settle([editor, owner])
            assert _ring(editor, share).latest_epoch == 1
            assert owner.files()["waiting.txt"] == b"written while waiting"
            assert editor.node.status(share).reason == ""
        finally:
            for dev in devices:
                await dev.node.close()


async def test_a_device_linked_after_the_rotation_gets_the_key_from_an_owner(
    tmp_path: Path,
) -> None:
    async with running_relay(tmp_path / "relay") as url:
        owner = make_device(tmp_path, "owner", url)
        editor = make_device(tmp_path, "editor", url)
        gone = make_device(tmp_path, "gone", url)
        devices = [owner, editor, gone]
        try:
            share = await share_between(owner, editor, gone)
            code_for_editor = await _invite_code(owner, editor, share)
            await remove_member(
                owner.home,
                owner.node.device,
                owner.node.link,
                share,
                gone.user_key,
                clock=SystemClock(),
                rng=OsRandom(),
            )
            (owner.folder / "new.txt").write_bytes(b"after the rotation")
            await owner.sync()
            # The editor's second device joins with a code made before the rotation: epoch 0.
            tablet = second_device(tmp_path, editor, "tablet", url)
            devices.append(tablet)
            await _join(tablet, code_for_editor)
            await tablet.sync()
            assert "waiting for an owner's device" in tablet.node.status(share).reason
            assert "new.txt" not in tablet.files()
            # An owner's pass looks for devices lacking the key once a minute (and whenever the
            # chain moved); here the minute has passed.
            owner.node.syncs[share].keys.wrap_check_interval_ms = 0
            await owner.sync()
            await tablet.sync()
            assert tablet.files()["new.txt"] == b"after the rotation"
            assert _ring(tablet, share).latest_epoch == 1
        finally:
            for dev in devices:
                await dev.node.close()


async def test_revoking_a_device_rotates_the_keys(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        owner = make_device(tmp_path, "owner", url)
        editor = make_device(tmp_path, "editor", url)
        devices = [owner, editor]
        try:
            share = await share_between(owner, editor)
            phone = second_device(tmp_path, owner, "phone", url)
            devices.append(phone)
            await _join(phone, await _invite_code(owner, owner, share))
            await settle(devices)
            holder = load_user(owner.home)
            assert holder is not None
            revocation = holder.revoke(phone.node.device.device_id, SystemClock().now_ms())
            done = await revoke_in_shares(
                owner.home,
                owner.node.config,
                owner.node.device,
                owner.node.link,
                revocation,
                clock=SystemClock(),
                rng=OsRandom(),
            )
            assert [(d.share, d.rotation.epoch if d.rotation else None) for d in done] == [
                (share, 1)
            ]
            (editor.folder / "after.txt").write_bytes(b"not for the lost phone")
            await settle([editor, owner])
            assert owner.files()["after.txt"] == b"not for the lost phone"
            assert _ring(editor, share).latest_epoch == 1
            assert _ring(phone, share).latest_epoch == 0
        finally:
            for dev in devices:
                await dev.node.close()


async def _invite_code(owner: Dev, member: Dev, share: str) -> str:
    from peer.engine.shares import invite_member
    from protocol.chain import Role

    role = Role.OWNER if member is owner else Role.EDITOR
    return await invite_member(
        owner.home,
        owner.node.config,
        owner.node.device,
        owner.node.link,
        share,
        member.user_key,
        role,
        clock=SystemClock(),
        rng=OsRandom(),
    )


async def _join(dev: Dev, code: str) -> None:
    from peer.engine.shares import InviteCode, join_share

    await join_share(
        dev.home,
        dev.node.config,
        dev.node.device,
        dev.node.link,
        InviteCode.from_text(code),
        dev.folder,
    )


class _Crash(Exception):
    """The device dies here."""


class _DiesAfterKeyEpoch:
    """The owner's relay link, on a device that dies right after the relay took its key_epoch
    entry: before it saved the new key as current or wrapped it for anyone."""

    def __init__(self, link: object) -> None:
        self.link = link
        self.entries = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.link, name)

    async def extend_chain(self, share: str, entry: bytes) -> int:
        height = await self.link.extend_chain(share, entry)  # type: ignore[attr-defined]
        self.entries += 1
        if self.entries == 2:  # the removal, then the key epoch
            raise _Crash
        return height


async def test_a_crash_right_after_the_key_epoch_entry_loses_no_key(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        owner = make_device(tmp_path, "owner", url)
        editor = make_device(tmp_path, "editor", url)
        gone = make_device(tmp_path, "gone", url)
        devices = [owner, editor, gone]
        try:
            share = await share_between(owner, editor, gone)
            await settle(devices)
            with pytest.raises(_Crash):
                await remove_member(
                    owner.home,
                    owner.node.device,
                    _DiesAfterKeyEpoch(owner.node.link),  # type: ignore[arg-type]
                    share,
                    gone.user_key,
                    clock=SystemClock(),
                    rng=OsRandom(),
                )
            assert _ring(owner, share).latest_epoch == 0  # only the pending copy has epoch 1
            (owner.folder / "after.txt").write_bytes(b"written after the crash")
            await owner.sync()  # adopts the pending key, then wraps it for the editor
            assert _ring(owner, share).latest_epoch == 1
            await editor.sync()
            assert editor.files()["after.txt"] == b"written after the crash"
            assert _ring(editor, share).latest_epoch == 1
        finally:
            for dev in devices:
                await dev.node.close()


async def test_a_member_revoking_their_device_has_an_owner_rotate(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        owner = make_device(tmp_path, "owner", url)
        editor = make_device(tmp_path, "editor", url)
        devices = [owner, editor]
        try:
            share = await share_between(owner, editor)
            tablet = second_device(tmp_path, editor, "tablet", url)
            devices.append(tablet)
            await _join(tablet, await _invite_code(owner, editor, share))
            await settle(devices)
            holder = load_user(editor.home)
            assert holder is not None
            revocation = holder.revoke(tablet.node.device.device_id, SystemClock().now_ms())
            done = await revoke_in_shares(
                editor.home,
                editor.node.config,
                editor.node.device,
                editor.node.link,
                revocation,
                clock=SystemClock(),
                rng=OsRandom(),
            )
            assert [(d.share, d.rotation) for d in done] == [(share, None)]
            assert "owner" in done[0].reason
            await owner.sync()  # the chain says a rotation is due: the owner's pass does it
            assert _ring(owner, share).latest_epoch == 1
            (editor.folder / "after.txt").write_bytes(b"not for the tablet")
            await settle([editor, owner])
            assert owner.files()["after.txt"] == b"not for the tablet"
            assert _ring(editor, share).latest_epoch == 1
            assert _ring(tablet, share).latest_epoch == 0
        finally:
            for dev in devices:
                await dev.node.close()
