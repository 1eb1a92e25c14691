"""Concurrent changes: edits on three devices, edit against delete, first merge of full folders."""

from __future__ import annotations

from pathlib import Path

from tests.peer_sync.harness import make_device, running_relay, settle, share_between


def copies(files: dict[str, bytes]) -> dict[str, bytes]:
    return {p: d for p, d in files.items() if "conflicted copy" in p}


async def test_three_concurrent_edits_one_winner_two_copies(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        devs = [make_device(tmp_path, n, url) for n in ("a", "b", "c")]
        try:
            await share_between(devs[0], devs[1], devs[2])
            (devs[0].folder / "plan.txt").write_bytes(b"v0")
            await settle(devs)
            # Offline edits on all three sides, then everyone reconnects.
            for dev in devs:
                (dev.folder / "plan.txt").write_bytes(f"edit by {dev.name}".encode())
            for dev in devs:  # each publishes before seeing the others
                sync = dev.node.share(next(iter(dev.node.config.shares)))
                from peer.engine.sync import PassReport

                await sync.publish_changes(PassReport())
                await sync.send_outbox()
            await settle(devs)
            pictures = [dev.files() for dev in devs]
            assert pictures[0] == pictures[1] == pictures[2]
            assert len(copies(pictures[0])) == 2
            contents = sorted(pictures[0].values())
            assert contents == sorted([b"edit by a", b"edit by b", b"edit by c"])
        finally:
            for dev in devs:
                await dev.node.close()


async def test_offline_edits_then_reconnect_conflicted_copy(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            await share_between(a, b)
            (a.folder / "n.txt").write_bytes(b"base")
            await settle([a, b])
            (a.folder / "n.txt").write_bytes(b"from a")
            await a.sync()
            (b.folder / "n.txt").write_bytes(b"from b")  # b has not pulled a's edit yet
            await settle([b, a])
            assert a.files() == b.files()
            assert sorted(a.files().values()) == [b"from a", b"from b"]
            assert len(copies(a.files())) == 1
        finally:
            await a.node.close()
            await b.node.close()


async def test_a_save_while_the_blocks_flush_is_not_set_aside_in_the_uploaded_ones_place(
    tmp_path: Path,
) -> None:
    """Simulation seeds 143, 400, 877: the user saved the file again after its blocks were
    uploaded and before the pass made it a conflicted copy (the flush waited on the relay).
    The newer file was renamed aside, recorded as the uploaded version and never published:
    its disk differed from the tree for good while the device said idle."""
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            (a.folder / "n.txt").write_bytes(b"base")
            await settle([a, b])
            (a.folder / "n.txt").write_bytes(b"from a")
            await a.sync()
            (b.folder / "n.txt").write_bytes(b"from b")  # b has not pulled a's edit yet
            sync = b.node.share(share)
            flush = sync.blocks.flush
            saved = []

            async def flush_then_save() -> None:
                await flush()
                if not saved:
                    saved.append(True)
                    (b.folder / "n.txt").write_bytes(b"saved again by b meanwhile")

            sync.blocks.flush = flush_then_save  # type: ignore[method-assign]
            await b.sync()
            assert saved
            await settle([b, a])
            assert a.files() == b.files()
            assert b"saved again by b meanwhile" in a.files().values()
            assert a.files()["n.txt"] == b"from a"
        finally:
            await a.node.close()
            await b.node.close()


async def test_edit_beats_delete(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            await share_between(a, b)
            (a.folder / "keep.txt").write_bytes(b"one")
            await settle([a, b])
            (a.folder / "keep.txt").unlink()
            await a.sync()
            (b.folder / "keep.txt").write_bytes(b"edited while deleted elsewhere")
            await settle([b, a])
            assert a.files() == b.files() == {"keep.txt": b"edited while deleted elsewhere"}
        finally:
            await a.node.close()
            await b.node.close()


async def test_joining_with_files_loses_nothing(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            a.folder.mkdir()
            (a.folder / "same.txt").write_bytes(b"same")
            (a.folder / "differs.txt").write_bytes(b"a's version")
            (a.folder / "only-a.txt").write_bytes(b"a")
            b.folder.mkdir()
            (b.folder / "same.txt").write_bytes(b"same")
            (b.folder / "differs.txt").write_bytes(b"b's version")
            (b.folder / "sub").mkdir()
            (b.folder / "sub" / "only-b.txt").write_bytes(b"b")
            await share_between(a, b)
            await settle([a, b])
            assert a.files() == b.files()
            files = a.files()
            assert files["same.txt"] == b"same"
            assert files["only-a.txt"] == b"a"
            assert files["sub/only-b.txt"] == b"b"
            assert sorted(d for p, d in files.items() if p.startswith("differs")) == [
                b"a's version",
                b"b's version",
            ]
        finally:
            await a.node.close()
            await b.node.close()
