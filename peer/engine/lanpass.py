"""The LAN steps of a share's sync pass, and what a pass does while the relay is away.

With LAN peers (``ShareLan.active``), a pass no longer stops at an unreachable relay:

- envelopes LAN peers sent are applied first, through the replica's checks (``apply_lan``), and
  the sealed blocks they name are fetched from the peers that keep them (``hold_lan_blocks``;
  what no peer delivered is asked for again next pass);
- the relay's log is read for at most ``RELAY_PROBE_S``, and every other relay call of the pass
  fails at once when no connection to the relay opens or no answer comes in time
  (``relay_fail_fast``). Once one failed (the log read is skipped while the notification socket
  says the log is quiet, so the first to find the relay away may be an upload), passes skip the
  relay until a background probe hears from it again, and go on without it: blocks of local
  changes are deferred (the relay records them as owed when the envelope reaches it),
  envelopes are pushed to LAN peers, downloads come from LAN peers alone;
- once the relay answers again, before the outbox: blocks it owes that this device can rebuild
  (``ShareLan.regenerate``) are uploaded, then envelopes of others that only came over the LAN are
  forwarded together with the outbox, in causal order (``peer.engine.lanorder``: each device's
  envelopes have seen the others', so no device's alone can go first). The relay appends an
  identical resend once, so devices forwarding the same envelope cannot duplicate it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

from peer.engine.lanorder import causal_order
from peer.engine.parts import APPEND_BATCH, SyncParts, logger
from peer.errors import RelayRefused, RelayUnreachable
from peer.remote.link import relay_fail_fast
from protocol.envelope import Envelope

RELAY_PROBE_S = 3.0
"""How long a pass with LAN peers waits for the relay's log before going on without it (a pull
cut short keeps what it applied; the next pass goes on from there)."""
RELAY_RETRY_S = 2.0
"""While the relay is away, passes skip it and a background probe asks it this often."""
RELAY_PROBE_TIMEOUT_S = 10.0


class LanPass(SyncParts):
    _probe: asyncio.Task[None] | None = None
    _recover_from_fork: Callable[[], None]  # ShareSync's: another copy of us wrote our counters

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
                with relay_fail_fast():  # this loop is the retry
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
        self.take_back()  # a chain from a LAN peer, or one fetched late in the last pass
        self.apply_lan_inbox()
        if not self.lan.active:
            await self.pull()
            return
        await self.hold_lan_blocks()
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
        if report.blocks:
            self._blocks_to_hold().update(report.blocks)
        if report.applied:
            self.apply_pending = True
        return report.applied

    def _blocks_to_hold(self) -> set[bytes]:
        if self.lan.to_hold is None:
            # After a restart: those of envelopes accepted before it, not yet at the relay.
            own = self.replica.device.device_id
            self.lan.to_hold = {
                b
                for _, _, body in self.replica.envelopes.unrelayed(own)
                for b in Envelope.decode(body).header.blocks
            }
        return self.lan.to_hold

    async def hold_lan_blocks(self) -> None:
        """Keep the sealed blocks that envelopes accepted from LAN peers name until the relay has
        them: fetched at once from the peers that keep them (the author's deferred blocks,
        another forwarder's). Whoever accepted a version then holds its blocks: the author may
        be wiped or restored from an old backup seconds later, and forwarding its envelopes
        without them leaves a version nobody can ever download (seed 1059). A block no peer
        keeps went to the relay when it was written. Downloads read held blocks here
        (``peer.engine.lanfetch``): no byte crosses the LAN twice.

        A block no peer delivered now (its keeper's link down, or not up yet after a restart)
        is asked for again by the next pass, until the relay has it: dropped, it was never asked
        for again, and an author restored from a backup later took the only copy along."""
        wanted = self._blocks_to_hold() - self.blocks.known
        wanted -= self.lan.store.kept(wanted)
        self.lan.to_hold = wanted
        if not wanted or not self.lan.has_peers():
            return  # tried again once a peer is there
        got = await self.lan.fetch(sorted(wanted))
        # A peer may answer a block id with anything that verifies as a chunk: keep sealed
        # blocks only (a block id is the SHA-256 of its sealed bytes).
        sealed = {b: data for b, data in got.items() if hashlib.sha256(data).digest() == b}
        self.lan.keep_deferred(sealed)
        self.lan.to_hold = wanted - sealed.keys()

    async def push_outbox_to_lan(self) -> None:
        """While the relay is away, offer every envelope it has not acknowledged yet; peers take
        what they lack. With the relay there, peers hear of a change from it (its notice wakes
        them, and a LAN push as well woke a second pass for the same change on every peer); the
        content still comes over the LAN."""
        if self.relay_down is None or not self.lan.has_peers():
            return
        outbox = [Envelope.decode(raw) for _, raw in self.store.outbox()]
        await self.lan.push(outbox)

    async def catch_relay_up(self) -> None:
        """Before the outbox: blocks the relay owes that we can rebuild, then others' envelopes
        that reached us only over the LAN."""
        if not self.lan.active:
            return
        deferred = self.blocks.deferred | set(self.lan.store.deferred_ids())
        if deferred:
            await self._upload_owed(sorted(deferred))
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
        undelivered = (self.lan.to_hold or set()) - self.blocks.known
        if undelivered:
            # Blocks of LAN envelopes no peer could deliver yet: those the relay has need no
            # copy here (most blocks no peer keeps went to the relay when they were written),
            # and asking the peers for them every pass would go on for ever.
            self.blocks.known.update(await self.link.have_blocks(self.share, sorted(undelivered)))
        others = self.replica.envelopes.unrelayed(self.replica.device.device_id)
        if not others:
            return  # the outbox alone is in order
        certificates = self.store.certificates()
        rows = [(Envelope.decode(body), body) for _, _, body in others]
        rows += [(Envelope.decode(raw), raw) for _, raw in self.store.outbox()]
        ordered = causal_order(rows)
        for start in range(0, len(ordered), APPEND_BATCH):
            if not await self._forward(ordered[start : start + APPEND_BATCH], certificates):
                break  # the next pass tries again: the author may have sent the gap by then

    async def _forward(
        self, rows: list[tuple[Envelope, bytes]], certificates: dict[bytes, bytes]
    ) -> bool:
        """Send ``rows`` (others' envelopes, each with its signer's certificate, and our own);
        False when the relay refused them."""
        own = self.replica.device.device_id
        referenced = list(dict.fromkeys(b for e, _ in rows for b in e.header.blocks))
        if referenced:
            await self._upload_owed(referenced)
        others = [(e.header.device, e.header.counter) for e, _ in rows if e.header.device != own]
        try:
            await self.link.append(
                self.share,
                [
                    (body, None if e.header.device == own else certificates.get(e.header.device))
                    for e, body in rows
                ],
            )
        except RelayRefused as exc:
            # Not ours to fix (most often a gap: an author has not sent an earlier envelope
            # yet); forwarding is a courtesy, each author's own outbox is the guarantee.
            logger.info("share %s: the relay refused forwarded envelopes: %s", self.share, exc)
            index = exc.details.get("index")
            if exc.code == "fork" and _is_own(rows, index, own):
                # The outbox alone would be refused for what it has seen before the fork showed:
                # recover here, as the outbox does.
                self._recover_from_fork()
                return False
            if exc.code not in ("gap", "missing_dependencies"):
                self.replica.envelopes.mark_relayed(others)
            return False
        self.replica.envelopes.mark_relayed(others)
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
        sent = {b for b, _ in rebuilt}
        self.lan.store.drop_deferred(b for b in block_ids if b in have or b in sent)


def _is_own(rows: list[tuple[Envelope, bytes]], index: object, own: bytes) -> bool:
    """Whether the relay's refusal names (by its ``index`` in the batch) one of our envelopes."""
    return isinstance(index, int) and 0 <= index < len(rows) and rows[index][0].header.device == own
