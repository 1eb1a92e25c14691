"""A simulated device's crash keeps exactly the committed state of its share database: the
daemon restarted after a power cut finds what was committed and nothing of the pass it was in
the middle of (stopping the daemon runs that pass's ``finally``, which would commit it); a clean
stop keeps everything, and a backup taken mid-pass restores what was committed then."""

from __future__ import annotations

import asyncio
from pathlib import Path

from peer.engine.parts import PassReport
from simulations.harness import Stats, run_world
from simulations.world import World


def test_crash_restart_and_restore_keep_committed_state(tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    async def script(world: World, stats: Stats) -> None:
        laptop = world.add_device("laptop", user="ada")
        phone = world.add_device("phone", user="ada")
        share = await world.create_share(laptop, [phone])
        world.start_all()
        world.write(laptop, "a.txt", b"a\n")
        stats.operations += 1
        await world.quiesce(120)

        sync = phone.share_sync(share)
        store = sync.store
        store.set("probe.committed", 1)
        in_pass = asyncio.Event()

        async def pass_cut_short() -> PassReport:
            with store.batch():  # commits on the way out, also when cancelled
                store.set("probe.open", 1)
                in_pass.set()
                await asyncio.Event().wait()
            return PassReport()

        sync.run_pass = pass_cut_short  # type: ignore[method-assign]
        phone.poke()
        await asyncio.wait_for(in_pass.wait(), 10)
        backup = phone.take_backup(tmp_path / "backup")
        await phone.crash()
        await asyncio.sleep(1)
        phone.restart()
        store = phone.share_sync(share).store
        seen["after crash"] = (store.get("probe.committed"), store.get("probe.open"))

        store.set("probe.later", 1)
        await phone.stop()
        phone.restart()
        seen["after stop"] = phone.share_sync(share).store.get("probe.later")

        await phone.restore_backup(backup)
        store = phone.share_sync(share).store
        seen["after restore"] = tuple(
            store.get(k) for k in ("probe.committed", "probe.open", "probe.later")
        )

    outcome = run_world(5, script)
    assert outcome.error is None, outcome.error
    assert outcome.violations == []
    assert seen == {
        "after crash": (1, None),
        "after stop": 1,
        "after restore": (1, None, None),
    }
