"""A device at run time: its identity, config, relay link and one sync task per share.

``DeviceNode`` is what the CLI, the demo, the tests and the benchmark drive. ``run`` is the
daemon: each share's task owns the share's folder tree and state, and runs a sync pass when the
folder changes (watchdog, debounced), when the relay says the share moved on (WebSocket, or
long-poll), and every ``rescan_interval_s`` as a safety net. A lost relay makes the share
``offline`` and retries with backoff and jitter; local changes queue in the outbox meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from peer.device.config import DeviceConfig
from peer.device.home import Home
from peer.device.identity import load_device
from peer.engine.lannode import DeviceLan, LanSeams
from peer.engine.replica import ShareReplica
from peer.engine.shares import open_state
from peer.engine.state import ShareState, ShareStatus
from peer.engine.sync import PassReport, ShareSync, SyncOptions
from peer.errors import ConfigError, DriftError, NotFound, RelayUnreachable
from peer.fs import FileSystem, FsError, OsFileSystem
from peer.lan.errors import LanError
from peer.local.watch import Watcher, WatchState, WatchStatus
from peer.remote.backoff import Backoff
from peer.remote.http import HttpRelayLink
from peer.remote.link import RelayLink
from peer.remote.ratelimit import Bandwidth
from protocol.keys import CertifiedDevice
from seams import Clock, Executor, RandomSource, SystemClock, ThreadExecutor
from seams.random import OsRandom
from seams.statedb import FileStateDatabases, StateDatabases
from seams.tasks import end_tasks

logger = logging.getLogger("peer.engine")

NOTIFY_WAIT_S = 25.0
LAN_RELAY_RETRY_S = 30.0


@dataclass
class Seams:
    clock: Clock = field(default_factory=SystemClock)
    rng: RandomSource = field(default_factory=OsRandom)
    # Mostly I/O waits (fsyncs, reads) and GIL-free hashing: more threads than cores pay.
    executor: Executor = field(default_factory=lambda: ThreadExecutor(16, "drift"))
    folder: Callable[[str], FileSystem] = OsFileSystem
    databases: StateDatabases = field(default_factory=FileStateDatabases)  # each share's state
    lan: LanSeams = field(default_factory=LanSeams)


class DeviceNode:
    def __init__(
        self,
        home: Home,
        *,
        seams: Seams | None = None,
        link: RelayLink | None = None,
        watch: bool = True,
    ) -> None:
        self.home = home
        self.seams = seams or Seams()
        self.config = DeviceConfig.load(home.config)
        self.device: CertifiedDevice = load_device(home, self.seams.rng)
        self._link = link
        self.watch = watch
        self.syncs: dict[str, ShareSync] = {}
        self.triggers: dict[str, asyncio.Event] = {}
        self.backoff = Backoff(base_s=0.5, cap_s=60.0)
        self.lan: DeviceLan | None = None
        self._config_stamp: tuple[int, int, int] | None = None  # of the file self._fresh read
        self._fresh = self.config
        self._saved_states: dict[str, tuple[str, str, str]] = {}

    # -- parts -----------------------------------------------------------------------------------

    @property
    def link(self) -> RelayLink:
        if self._link is None:
            if not self.config.relay_url:
                raise ConfigError(
                    "this device has no relay", hint="run `drift relay login URL` first"
                )
            http = HttpRelayLink(
                self.config.relay_url,
                self.device,
                clock=self.seams.clock,
                rng=self.seams.rng,
                upload=Bandwidth(self.seams.clock, self.config.upload_limit_kib_s * 1024),
                download=Bandwidth(self.seams.clock, self.config.download_limit_kib_s * 1024),
            )
            http.register = True
            self._link = http
        return self._link

    def share(self, share_id: str) -> ShareSync:
        sync = self.syncs.get(share_id)
        if sync is not None:
            return sync
        share = self.config.shares.get(share_id)
        if share is None:
            raise NotFound(f"this device does not sync share {share_id}")
        store = open_state(self.home, share_id, self.seams.databases)
        replica = ShareReplica.open(store, self.device, self.seams.rng)
        try:
            fs = self.seams.folder(share.path)
        except Exception as exc:  # the seam's own errors: missing or unreadable folder
            store.close()
            raise ConfigError(
                f"the folder of share {share.name or share_id} ({share.path}) cannot be opened: "
                f"{exc}",
                hint="mount or recreate it, or `drift share remove` it",
            ) from exc
        sync = ShareSync(
            replica,
            fs,
            self.link,
            clock=self.seams.clock,
            executor=self.seams.executor,
            options=SyncOptions(mass_delete_fraction=self.config.mass_delete_fraction),
        )
        self.syncs[share_id] = sync
        return sync

    async def close(self) -> None:
        for sync in self.syncs.values():
            sync.blocks.cancel_prefetch()  # also when ``run`` ended before its own cleanup did
            sync.replica.checkpoint(every=1)  # the next start loads the tree instead of replaying
            sync.store.close()
        self.syncs.clear()
        if self._link is not None:
            await self._link.close()

    # -- one-shot --------------------------------------------------------------------------------

    async def sync_once(self, share_id: str | None = None) -> dict[str, PassReport]:
        ids = [share_id] if share_id else list(self.config.shares)
        out: dict[str, PassReport] = {}
        for sid in ids:
            sync = self.share(sid)
            self._control(sid, sync)
            if sync.state is ShareState.PAUSED and self.config.shares[sid].paused:
                continue
            out[sid] = await sync.run_pass()
            self._save_state(sync)
        return out

    def status(self, share_id: str) -> ShareStatus:
        sync = self.share(share_id)
        status = sync.status(self.config.shares[share_id].path)
        saved = sync.store.get("state")
        if saved and sync.state is ShareState.IDLE and not self.syncs_running:
            status.state = ShareState(saved)
            status.reason = str(sync.store.get("reason", ""))
            notice = str(sync.store.get("notice", ""))  # the daemon's, e.g. out of watches
            if notice:
                status.reason = f"{status.reason}; {notice}" if status.reason else notice
        if self.config.shares[share_id].paused:
            status.state, status.reason = ShareState.PAUSED, "paused by the user"
        return status

    syncs_running = False

    def _fresh_config(self) -> DeviceConfig:
        """The config as last written (by `drift pause/resume`): read again when it changed."""
        try:
            st = self.home.config.stat()
        except OSError:
            return DeviceConfig.load(self.home.config)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._config_stamp:
            self._fresh = DeviceConfig.load(self.home.config)
            self._config_stamp = stamp
        return self._fresh

    def _control(self, share_id: str, sync: ShareSync) -> None:
        """Apply what `drift pause/resume` wrote to the config and the share's state."""
        fresh = self._fresh_config()
        if share_id in fresh.shares:
            self.config.shares[share_id].paused = fresh.shares[share_id].paused
        if self.config.shares[share_id].paused:
            sync.state, sync.reason = ShareState.PAUSED, "paused by the user"
        elif sync.store.get("accept_deletes"):
            sync.store.set("accept_deletes", False)
            sync.override_guard = True
            sync.state, sync.reason = ShareState.IDLE, ""
        elif sync.state is ShareState.PAUSED and sync.reason == "paused by the user":
            sync.state, sync.reason = ShareState.IDLE, ""

    def _save_state(self, sync: ShareSync) -> None:
        state = (sync.state.value, sync.reason, sync.notice)
        if self._saved_states.get(sync.share) == state:
            return  # unchanged: no write (each is a commit, an fsync) after every pass
        sync.store.set("state", state[0])
        sync.store.set("reason", state[1])
        sync.store.set("notice", state[2])
        self._saved_states[sync.share] = state

    # -- the daemon ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Sync every share until ``stop`` is set."""
        self.syncs_running = True
        tasks = []
        watchers: list[Watcher] = []
        try:
            for sid in self.config.shares:
                trigger = asyncio.Event()
                trigger.set()
                self.triggers[sid] = trigger
                sync = self.share(sid)
                if self.watch:
                    watcher = self._watcher(sid, sync)
                    watchers.append(watcher)
                    await watcher.start()
                    tasks.append(asyncio.create_task(self._watch_loop(watcher, sync, trigger)))
                tasks.append(asyncio.create_task(self._share_loop(sid, trigger, stop)))
            await self._start_lan()
            tasks.append(asyncio.create_task(self._notifications(stop)))
            await stop.wait()
        finally:
            if self.lan is not None:
                await self.lan.close()
                self.lan = None
            await end_tasks(tasks, logger)
            for sync in self.syncs.values():
                sync.blocks.cancel_prefetch()
            for watcher in watchers:
                await watcher.stop()
            for sync in self.syncs.values():
                self._save_state(sync)  # a notice of the watcher ends with it
            self.syncs_running = False

    def _watcher(self, sid: str, sync: ShareSync) -> Watcher:
        def on_status(status: WatchStatus) -> None:
            # Out of watches (or the watcher died): say so in `drift status`; sync goes on.
            sync.notice = status.message if status.state is WatchState.POLLING else ""
            # Only a healthy watcher's events may narrow a pass to what they name.
            sync.watching = status.state is WatchState.WATCHING
            if not sync.watching:
                sync.note_changed(frozenset(), full=True)

        return Watcher(
            Path(self.config.shares[sid].path),
            clock=self.seams.clock,
            executor=self.seams.executor,
            ignore_rules=lambda: sync.ignore,
            debounce_ms=self.config.watch_delay_ms,
            rescan_interval_s=self.config.rescan_interval_s,
            fallback_rescan_interval_s=min(60.0, self.config.rescan_interval_s),
            on_status=on_status,
        )

    async def _watch_loop(self, watcher: Watcher, sync: ShareSync, trigger: asyncio.Event) -> None:
        async for batch in watcher:
            sync.note_changed(batch.paths, full=batch.full_rescan)
            trigger.set()

    async def _start_lan(self) -> None:
        """LAN peers for every share (unless the config turns them off); never fatal."""
        if not self.config.lan_enabled or not self.syncs:
            return
        lan = DeviceLan(
            self.device,
            self.config,
            self.syncs,
            clock=self.seams.clock,
            rng=self.seams.rng,
            home=self.home,
            seams=self.seams.lan,
        )
        for sid, sync in self.syncs.items():
            sync.lan.wake = self.triggers[sid].set
        try:
            await lan.start()
        except (OSError, LanError) as exc:
            logger.warning("LAN sync is off: %s", exc)
            await lan.close()
            return
        self.lan = lan

    async def _share_loop(self, sid: str, trigger: asyncio.Event, stop: asyncio.Event) -> None:
        sync = self.share(sid)
        failures = 0
        delay_s = self.config.watch_delay_ms / 1000
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.rescan_interval_s):
                    await trigger.wait()
            await self.seams.clock.sleep(delay_s)  # let a burst of writes settle
            trigger.clear()
            self._control(sid, sync)
            if sync.state is ShareState.PAUSED and self.config.shares[sid].paused:
                self._save_state(sync)
                continue
            try:
                sync.state = (
                    ShareState.SYNCING if sync.state is not ShareState.PAUSED else sync.state
                )
                report = await sync.run_pass()
                failures = 0
                if self.lan is not None:
                    await self.lan.chains_may_have_changed()
                if report.published or report.downloaded or report.moved or report.trashed:
                    logger.info(
                        "%s: %d change(s) published, %d file(s) downloaded, %d moved, "
                        "%d to the trash, %d conflict(s)",
                        self.config.shares[sid].name or sid,
                        report.published,
                        report.downloaded,
                        report.moved,
                        report.trashed,
                        report.conflicts,
                    )
                if report.changing or report.errors or report.waiting:
                    self._retry_soon(trigger, 0.5 if report.changing else 5.0)
            except RelayUnreachable as exc:
                failures += 1
                sync.state, sync.reason = ShareState.OFFLINE, str(exc)
                retry_s = self.backoff.delay(failures, self.seams.rng)
                if self.lan is not None:
                    await self.lan.chains_may_have_changed()
                    # Syncing goes on with LAN peers; the relay is worth trying again soon.
                    retry_s = min(retry_s, LAN_RELAY_RETRY_S)
                self._retry_soon(trigger, retry_s)
            except DriftError as exc:
                failures += 1
                if sync.state is not ShareState.ERROR:
                    sync.state = ShareState.ERROR
                    sync.reason = sync.reason or str(exc)
                logger.warning("share %s: %s", sid, exc)
                self._retry_soon(trigger, self.backoff.delay(failures, self.seams.rng))
            except FsError as exc:
                # The folder changed under the pass (a file vanished or appeared mid-way). A pass
                # is a reconciliation, so the next one starts from what is there now; backing off
                # keeps a lasting fault (a folder we may not read) from spinning.
                failures += 1
                logger.info("share %s: the folder changed during a pass (%s)", sid, exc)
                self._retry_soon(trigger, self.backoff.delay(failures, self.seams.rng))
            except Exception as exc:
                # A bug must not end the share's sync for good: say so, and try again later.
                failures += 1
                sync.state, sync.reason = ShareState.ERROR, f"internal error: {exc!r}"
                logger.exception("share %s: unexpected error in a sync pass", sid)
                self._retry_soon(trigger, self.backoff.delay(failures, self.seams.rng))
            self._save_state(sync)

    def _retry_soon(self, trigger: asyncio.Event, delay_s: float) -> None:
        asyncio.get_running_loop().call_later(delay_s, trigger.set)

    async def _notifications(self, stop: asyncio.Event) -> None:
        failures = 0
        signalled: dict[str, int] = {}
        while not stop.is_set():
            cursors = {
                sid: max(sync.replica.cursor, signalled.get(sid, 0))
                for sid, sync in self.syncs.items()
            }
            try:
                heads = await self.link.wait_heads(cursors, NOTIFY_WAIT_S)
                failures = 0
            except DriftError:
                failures += 1
                await self.seams.clock.sleep(self.backoff.delay(failures, self.seams.rng))
                continue
            for sid, head in heads.items():
                signalled[sid] = head  # the pass moves the cursor there; don't wake for it twice
                sync = self.syncs.get(sid)
                if sync is not None and head <= sync.replica.cursor:
                    continue  # our own append, recorded when the relay acknowledged it
                trigger = self.triggers.get(sid)
                if trigger is not None:
                    trigger.set()
