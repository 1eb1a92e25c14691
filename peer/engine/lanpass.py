"""The LAN steps of a share's sync pass, and what a pass does while the relay is away.

With LAN peers (``ShareLan.active``), a pass no longer stops at an unreachable relay:

- envelopes LAN peers sent are applied first, through the replica's checks (``apply_lan``);
- the relay's log is read for at most ``RELAY_PROBE_S``; once that failed, passes skip the relay
  until a background probe hears from it again, and go on without it: blocks of local changes
  are deferred (the relay records them as owed when the envelope reaches it), envelopes are
  pushed to LAN peers, downloads come from LAN peers alone;
- once the relay answers again, before the outbox: blocks it owes that this device can rebuild
  (``ShareLan.regenerate``) are uploaded, then envelopes of others that only came over the LAN are
  forwarded (the relay appends an identical resend once, so devices forwarding the same envelope
  cannot duplicate it).
"""

from __future__ import annotations

import asyncio

from peer.engine.parts import APPEND_BATCH, SyncParts, logger
from peer.errors import RelayRefused, RelayUnreachable
from protocol.envelope import Envelope

RELAY_PROBE_S = 3.0
"""How long a pass with LAN peers waits for the relay's log before going on without it (a pull
cut short keeps what it applied; the next pass goes on from there)."""
RELAY_RETRY_S = 2.0
"""While the relay is away, passes skip it and a background probe asks it this often."""
RELAY_PROBE_TIMEOUT_S = 10.0


class LanPass(SyncParts):
    _probe: asyncio.Task[None] | None = None

    def relay_skipped(self) -> bool:
        """True while the relay is known to be away (a background probe watches for it)."""
        return self.lan.active and self.relay_down is not None

    def _relay_failed(self, exc: RelayUnreachable) -> None:
        self.relay_down = exc
        self.blocks.offline = True
        if self.lan.active and (self._probe is None or self._probe.done()):
            self._probe = asyncio.ensure_future(self._probe_relay())

    def _relay_back(self) -> None:
        self.relay_down = None
        self.blocks.offline = False

    def stop_probe(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    async def _probe_relay(self) -> None:
        """Ask the relay now and then, off the pass: LAN syncing never waits for it."""
        while self.relay_down is not None and self.lan.active:
            await self.clock.sleep(RELAY_RETRY_S)
            try:
                async with asyncio.timeout(RELAY_PROBE_TIMEOUT_S):
                    await self.link.server_vector(self.share)
            except (RelayUnreachable, TimeoutError):
                continue
            except RelayRefused:
                pass  # it answered: the pass will hear why
            self._relay_back()
            self.lan.wake()

    async def pull_everything(self) -> None:
        """LAN envelopes, then the relay's log (bounded in time, or skipped, with LAN peers)."""
        self.apply_lan_inbox()
        if not self.lan.active:
            await self.pull()
            return
        if self.relay_skipped():
            return
        try:
            async with asyncio.timeout(RELAY_PROBE_S):
                await self.pull()
        except TimeoutError:
            self._relay_failed(RelayUnreachable("the relay did not answer in time"))
        except RelayUnreachable as exc:
            self._relay_failed(exc)

    def apply_lan_inbox(self) -> int:
        envelopes = self.lan.take_inbox()
        if not envelopes:
            return 0
        report, later = self.replica.apply_lan(envelopes, self.clock.now_ms())
        for rejected in report.rejected:
            logger.warning(
                "share %s: envelope %s#%d from a LAN peer not applied: %s",
                self.share,
                rejected.device.hex()[:16],
                rejected.counter,
                rejected.reason,
            )
        if later:
            self.lan.requeue(later)
        if report.applied:
            self.apply_pending = True
        return report.applied

    async def push_outbox_to_lan(self) -> None:
        """Offer every envelope the relay has not acknowledged yet; peers take what they lack."""
        if not self.lan.has_peers():
            return
        outbox = [Envelope.decode(raw) for _, raw in self.store.outbox()]
        await self.lan.push(outbox)

    async def catch_relay_up(self) -> None:
        """Before the outbox: blocks the relay owes that we can rebuild, then others' envelopes
        that reached us only over the LAN."""
        if not self.lan.active:
            return
        if self.blocks.deferred:
            await self._upload_owed(list(self.blocks.deferred))
            self.blocks.deferred.clear()
        # Blocks deferred before a restart are no longer listed: the outbox says which they are.
        unsure = {
            b
            for _, raw in self.store.outbox()
            for b in Envelope.decode(raw).header.blocks
            if b not in self.blocks.known
        }
        if unsure:
            await self._upload_owed(sorted(unsure))
        certificates = self.store.certificates()
        batch = self.replica.envelopes.unrelayed(self.replica.device.device_id)
        by_device: dict[bytes, list[tuple[int, bytes]]] = {}
        for device, counter, body in batch:
            by_device.setdefault(device, []).append((counter, body))
        for device, rows in by_device.items():
            for start in range(0, len(rows), APPEND_BATCH):
                part = rows[start : start + APPEND_BATCH]
                if not await self._forward(device, part, certificates.get(device)):
                    break  # the next pass tries again: the author may have sent the gap by then

    async def _forward(
        self, device: bytes, rows: list[tuple[int, bytes]], certificate: bytes | None
    ) -> bool:
        envelopes = [Envelope.decode(body) for _, body in rows]
        referenced = list(dict.fromkeys(b for e in envelopes for b in e.header.blocks))
        if referenced:
            await self._upload_owed(referenced)
        try:
            await self.link.append(self.share, [(body, certificate) for _, body in rows])
        except RelayRefused as exc:
            # Not ours to fix (most often a gap: the author has not sent an earlier envelope
            # yet); forwarding is a courtesy, the author's own outbox is the guarantee.
            logger.info(
                "share %s: the relay refused forwarded envelopes of %s: %s",
                self.share,
                device.hex()[:16],
                exc,
            )
            if exc.code not in ("gap", "missing_dependencies"):
                self.replica.envelopes.mark_relayed((device, c) for c, _ in rows)
            return False
        self.replica.envelopes.mark_relayed((device, counter) for counter, _ in rows)
        return True

    async def _upload_owed(self, block_ids: list[bytes]) -> None:
        have = await self.link.have_blocks(self.share, block_ids)
        rebuilt: list[tuple[bytes, bytes]] = []
        for block_id in block_ids:
            if block_id in have:
                continue
            data = await self.executor.run(self.lan.regenerate, block_id)
            if data is not None:
                rebuilt.append((block_id, data))
        for start in range(0, len(rebuilt), 64):
            await self.link.put_blocks(self.share, rebuilt[start : start + 64])
        self.blocks.known.update(block_ids)
