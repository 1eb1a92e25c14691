"""A removal the LAN could not know of (simulation seeds 856, 1129): a device applied a removed
member's envelopes past the removal's cutoff over the LAN, and wrote on top of them, before it
heard of the removal. The relay refuses those envelopes and every one that saw them, so once the
device knows of the removal it takes them back: the removed member's changes leave its tree and
disk, and its own changes (new files, edits, a move, a deletion) are sealed again on the valid
state and reach the relay."""

from __future__ import annotations

from pathlib import Path

from peer.engine.shares import remove_member
from peer.engine.sync import PassReport
from protocol.envelope import Envelope
from seams import SystemClock
from seams.random import OsRandom
from tests.peer_sync.harness import make_device, running_relay, settle, share_between


async def test_envelopes_past_a_removal_are_taken_back(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        owner = make_device(tmp_path, "owner", url)
        tablet = make_device(tmp_path, "tablet", url)
        pc = make_device(tmp_path, "pc", url)
        try:
            share = await share_between(owner, tablet, pc)
            (owner.folder / "shared.txt").write_bytes(b"v1")
            (owner.folder / "old.txt").write_bytes(b"to delete")
            (owner.folder / "move-me.txt").write_bytes(b"to move")
            (owner.folder / "both.txt").write_bytes(b"both v1")
            await settle([owner, tablet, pc])

            # pc and tablet on a LAN island: pc's changes are sealed (blocks uploaded) but its
            # envelopes reach only tablet.
            (pc.folder / "only-cy.txt").write_bytes(b"cy alone")
            (pc.folder / "cy.txt").write_bytes(b"cy wrote this")
            (pc.folder / "shared.txt").write_bytes(b"v2 by cy")
            pc_sync = pc.node.share(share)
            await pc_sync.publish_changes(PassReport())
            island = [Envelope.decode(raw) for _, raw in pc_sync.store.outbox()]
            assert island

            # Meanwhile, on the relay's side, the owner edits a file and removes cy (cutoff: what
            # the relay has).
            (owner.folder / "both.txt").write_bytes(b"the owner's edit")
            await owner.sync()
            await remove_member(
                owner.home,
                owner.node.device,
                owner.node.link,
                share,
                pc.user_key,
                clock=SystemClock(),
                rng=OsRandom(),
            )

            # Tablet applies pc's envelopes as a LAN peer's and writes them to disk; then the
            # user edits, adds, deletes and moves files: envelopes that have seen pc's.
            sync = tablet.node.share(share)
            sync.lan.received(island)
            assert sync.apply_lan_inbox() == len(island)
            await sync.apply_remote(PassReport())
            assert tablet.files()["shared.txt"] == b"v2 by cy"
            (tablet.folder / "cy.txt").write_bytes(b"bob's edit of cy's file")
            (tablet.folder / "bob.txt").write_bytes(b"bob")
            (tablet.folder / "old.txt").unlink()
            (tablet.folder / "move-me.txt").rename(tablet.folder / "moved.txt")
            (tablet.folder / "both.txt").write_bytes(b"bob's edit")
            await sync.publish_changes(PassReport())
            assert sync.store.outbox()

            # The heal: tablet learns of the removal from the relay and takes back pc's envelopes
            # and its own that saw them; its changes are sealed again and the relay takes them.
            await settle([tablet, owner])
            assert not sync.store.outbox()
            vector = await tablet.node.link.server_vector(share)
            tablet_id = tablet.node.device.device_id.hex()
            assert vector[tablet_id] == sync.replica.counter
            expected = {
                "shared.txt": b"v1",  # pc's edit went: back to the last valid version
                "cy.txt": b"bob's edit of cy's file",  # edited here: kept as bob's
                "bob.txt": b"bob",
                "moved.txt": b"to move",  # moved and deleted here: published again
            }
            # Edited on both sides while apart: both edits are kept, as without the removal.
            files = owner.files()
            both = sorted(files.pop(p) for p in list(files) if p.startswith("both"))
            assert both == [b"bob's edit", b"the owner's edit"]
            assert files == expected  # only-cy.txt existed only through pc
            assert tablet.files() == owner.files()
            assert sync.tree.listing() == owner.node.share(share).tree.listing()
        finally:
            await owner.node.close()
            await tablet.node.close()
            await pc.node.close()
