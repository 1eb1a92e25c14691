"""The LAN session with one peer, sans-IO: messages in, messages and events out.

The transport has already proved the peer's device key and checked its certificate
(``peer.lan.transport``); the session decides what may be said about which share. It never sees a
socket: the driver (``peer.lan.link``) calls ``feed(message)`` for every message that arrives and
sends what ``data_to_send()`` returns; the engine reads ``events()`` and calls ``push`` and
``want_chunks``.

Per share, in this order:

1. **Admission.** Only shares whose membership chain admits the peer's certificate
   (``LanAuthorizer``) are ever named to it. A peer admitted for none gets nothing at all.
2. **Chain heads first.** Each side sends ``chain_head``; the side behind asks ``chain_get`` from
   its own head (only of a peer it admits) and adopts the answer only as a verified extension of
   its chain (``peer.lan.chains``), then announces its new head. A different entry at a shared
   height is a fork: refused, reported (``ChainForked``), never adopted; the share is dropped. A
   chain that removes the peer's user (or revokes its device) ends its admission at once.
3. **Version vectors.** When both heads agree, each side sends ``get_envelopes`` with its vector;
   the other answers with ``push_envelopes`` carrying what the vector lacks (``EnvelopeSource``),
   and later pushes each local change. Received envelopes go up unverified (``EnvelopesReceived``):
   the engine validates them exactly as envelopes from the relay.
4. **Chunks.** ``want_blocks`` names *chunk ids* and ``block_data`` carries the chunk's plaintext
   (inside TLS); a chunk the peer lacks comes back in ``have_blocks_reply.missing``. A chunk that
   does not verify against its id (the injected ``VerifyChunk``) ends the session:
   ``PeerMisbehaved`` and ``ChunksUnavailable`` tell the engine to fetch elsewhere.

Every input is looked up in one table (``TRANSITIONS``) by session state and input type; anything
not in it, or any broken rule, moves the session to ``ERROR``: the events and messages of the
failed input are discarded (nothing half-applies) and later inputs are refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import StrEnum
from typing import Protocol

from peer.lan import events as ev
from peer.lan.authorizer import LanAuthorizer, Refusal
from peer.lan.chains import check_head, extend
from peer.lan.errors import ChunkMismatch, NotAdmitted, SessionEnded, SessionViolation
from peer.lan.errors import PeerMisbehaved as Misbehaviour
from protocol.chain import MembershipChain
from protocol.envelope import Envelope
from protocol.errors import Fork, ProtocolError
from protocol.keys import DeviceCertificate
from protocol.messages import (
    MAX_ITEMS_PER_BATCH,
    BlockData,
    ChainEntries,
    ChainGet,
    ChainHead,
    ErrorMsg,
    GetEnvelopes,
    HaveBlocksReply,
    Heartbeat,
    Message,
    PushEnvelopes,
    WantBlocks,
)
from protocol.vv import VersionVector


class SessionState(StrEnum):
    HELLO = "hello"  # identity proven by the transport; nothing said yet
    AUTHORIZED = "authorized"  # admitted for some shares; chain heads being exchanged
    CHAINS_SYNCED = "chains_synced"  # a share's chains agree; our version vector is sent
    SYNCING = "syncing"  # vectors exchanged both ways: envelopes and chunks flow
    CLOSED = "closed"  # no share left in common, or either side ended the session
    ERROR = "error"  # the peer broke the protocol


class EnvelopeSource(Protocol):
    """The engine's envelopes: what we have, and what a peer's vector lacks."""

    def vector(self, share: bytes) -> VersionVector: ...

    def envelopes_after(self, share: bytes, vector: VersionVector) -> Iterable[Envelope]:
        """Stored envelopes the vector does not cover, each device's in counter order."""
        ...


class ChunkSource(Protocol):
    """The engine's chunks (from local files or the cache), by chunk id."""

    def chunk(self, share: bytes, chunk_id: bytes) -> bytes | None: ...


VerifyChunk = Callable[[bytes, bytes, bytes], bool]
"""``verify(share, chunk_id, data)``: is ``data`` the chunk named ``chunk_id`` in that share?"""


@dataclasses.dataclass(frozen=True)
class SessionLimits:
    max_chunks_per_request: int = 64
    """Chunk ids in one ``want_blocks``; a peer asking more is cut off."""
    max_outstanding_chunks: int = 1024
    """Chunks we wait for from one peer at a time."""
    max_push_bytes: int = 4 * 1024 * 1024
    """Envelope bytes per ``push_envelopes`` (a larger envelope travels alone)."""


@dataclasses.dataclass
class _Share:
    """What the session knows of one share with this peer."""

    admitted: bool = False
    ended: bool = False  # admission ended or the chains forked: never reopened here
    head_sent: int | None = None  # height of the last head we announced
    peer_head: tuple[int, bytes] | None = None
    fetching: bool = False  # a chain_get of ours is unanswered
    agreed: bool = False
    peer_vector: VersionVector | None = None  # what the peer said it has (grows as we send)


LIVE = (SessionState.AUTHORIZED, SessionState.CHAINS_SYNCED, SessionState.SYNCING)

TRANSITIONS: dict[tuple[SessionState, type[Message] | str], str] = {
    (SessionState.HELLO, "start"): "_start",
    **{(state, "push"): "_push" for state in LIVE},
    **{(state, "want_chunks"): "_want_chunks" for state in LIVE},
    **{(state, "chains_changed"): "_chains_changed" for state in LIVE},
    **{(state, ChainHead): "_on_chain_head" for state in LIVE},
    **{(state, ChainGet): "_on_chain_get" for state in LIVE},
    **{(state, ChainEntries): "_on_chain_entries" for state in LIVE},
    **{(state, GetEnvelopes): "_on_get_envelopes" for state in LIVE},
    **{(state, PushEnvelopes): "_on_push_envelopes" for state in LIVE},
    **{(state, WantBlocks): "_on_want_blocks" for state in LIVE},
    **{(state, BlockData): "_on_block_data" for state in LIVE},
    **{(state, HaveBlocksReply): "_on_have_blocks_reply" for state in LIVE},
    **{(state, ErrorMsg): "_on_error" for state in LIVE},
    **{(state, Heartbeat): "_on_heartbeat" for state in LIVE},
}
"""(state, input) → handler. Inputs are message types or local calls. Among the live states the
handler moves the session forward: AUTHORIZED → CHAINS_SYNCED when a share's chains agree,
→ SYNCING when the peer's vector for an agreed share arrived; → CLOSED when no share is left."""


class LanSession:
    """One peer, one connection: admission, chain heads, vectors, envelopes and chunks."""

    def __init__(
        self,
        *,
        peer: DeviceCertificate,
        authorizer: LanAuthorizer,
        envelopes: EnvelopeSource,
        chunks: ChunkSource,
        verify_chunk: VerifyChunk,
        limits: SessionLimits = SessionLimits(),
    ) -> None:
        self.peer = peer
        self.state = SessionState.HELLO
        self._authorizer = authorizer
        self._envelopes = envelopes
        self._chunks = chunks
        self._verify_chunk = verify_chunk
        self.limits = limits
        self._shares: dict[bytes, _Share] = {}
        self._outstanding: dict[bytes, bytes] = {}  # chunk id → share
        self._generation = authorizer.generation
        self._outgoing: list[Message] = []
        self._events: list[ev.Event] = []

    # --- the driver's side ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the shares the peer is admitted for: our chain heads go out first."""
        self._run("start")

    def feed(self, message: Message) -> None:
        """One message from the peer; its consequences wait in ``data_to_send`` / ``events``."""
        self._run(type(message), message)

    def data_to_send(self) -> list[Message]:
        out, self._outgoing = self._outgoing, []
        return out

    def events(self) -> list[ev.Event]:
        out, self._events = self._events, []
        return out

    def close(self, reason: str = "closed locally") -> None:
        """End the session (the connection closed, or the engine let the peer go)."""
        if self.state not in (SessionState.CLOSED, SessionState.ERROR):
            self._give_up_chunks()
            self.state = SessionState.CLOSED
            self._events.append(ev.SessionClosed(reason))

    # --- the engine's side ---------------------------------------------------------------------

    def push(self, share: bytes, envelopes: Sequence[Envelope]) -> int:
        """Offer new local envelopes; returns how many were sent (0 if the share is not open)."""
        return int(self._run("push", share, envelopes) or 0)

    def want_chunks(self, share: bytes, chunk_ids: Iterable[bytes]) -> list[bytes]:
        """Ask the peer for chunks; returns the ids asked now (not those already pending).

        ``NotAdmitted`` when the share is not open with this peer, ``ValueError`` when too many
        chunks would be pending.
        """
        return list(self._run("want_chunks", share, list(chunk_ids)) or [])

    def chains_changed(self) -> None:
        """The engine's chains changed (a local entry, or another peer's): look again."""
        self._run("chains_changed")

    def shares(self) -> list[bytes]:
        """Shares open with this peer: admitted, chains agreed."""
        return [s for s, sh in self._shares.items() if sh.admitted and sh.agreed]

    def pending_chunks(self) -> int:
        return len(self._outstanding)

    # --- dispatch ------------------------------------------------------------------------------

    def _run(self, kind: type[Message] | str, *args: object) -> object:
        if self.state in (SessionState.CLOSED, SessionState.ERROR):
            raise SessionEnded(f"the session is {self.state.value}")
        handler = TRANSITIONS.get((self.state, kind))
        if handler is None:
            name = kind if isinstance(kind, str) else kind.TYPE
            if isinstance(kind, str):
                raise SessionEnded(f"cannot {name} in state {self.state.value}")
            return self._fail(SessionViolation(f"{name} is not allowed in {self.state.value}"))
        sent, said = len(self._outgoing), len(self._events)
        try:
            if self._authorizer.generation != self._generation and kind != "start":
                self._recheck_admission()
            result = getattr(self, handler)(*args)
        except (Misbehaviour, ProtocolError) as exc:
            # Nothing of the failed input leaves the session.
            del self._outgoing[sent:]
            del self._events[said:]
            return self._fail(exc)
        self._advance()
        return result

    def _fail(self, error: Exception) -> None:
        self._events.append(ev.PeerMisbehaved(str(error)))
        self._give_up_chunks()
        self._outgoing.clear()
        self.state = SessionState.ERROR

    def _advance(self) -> None:
        if self.state not in LIVE:
            return
        open_shares = [sh for sh in self._shares.values() if sh.admitted]
        if not open_shares:
            self.close("no share left in common with this peer")
        elif any(sh.agreed and sh.peer_vector is not None for sh in open_shares):
            self.state = SessionState.SYNCING
        elif any(sh.agreed for sh in open_shares) and self.state is SessionState.AUTHORIZED:
            self.state = SessionState.CHAINS_SYNCED

    # --- admission and chains ------------------------------------------------------------------

    def _start(self) -> None:
        self.state = SessionState.AUTHORIZED
        for share in self._authorizer.admitted_shares(self.peer):
            self._open(share)
        self._generation = self._authorizer.generation

    def _open(self, share: bytes) -> None:
        sh = self._shares.setdefault(share, _Share())
        sh.admitted = True
        self._announce(share, sh)

    def _announce(self, share: bytes, sh: _Share) -> None:
        chain = self._chain(share)
        if sh.head_sent != chain.height:
            sh.head_sent = chain.height
            self._send(ChainHead(share=share, height=chain.height, head_hash=chain.head_hash))
        self._maybe_fetch(share, sh)
        self._maybe_agree(share, sh)

    def _maybe_fetch(self, share: bytes, sh: _Share) -> None:
        """Ask an admitted peer whose head is ahead for the entries from our head on.

        A peer we do not admit is never asked, even if its chain might admit it: asking would
        tell it that we hold the share. Another member (or the relay) brings that chain.
        """
        chain = self._chain(share)
        if sh.peer_head is not None and sh.peer_head[0] > chain.height and not sh.fetching:
            sh.fetching = True
            self._send(ChainGet(share=share, since_height=chain.height))

    def _chains_changed(self) -> None:
        self._recheck_admission()

    def _recheck_admission(self) -> None:
        self._generation = self._authorizer.generation
        for share in self._authorizer.shares():
            sh = self._shares.setdefault(share, _Share())
            refusal = self._authorizer.refusal(share, self.peer)
            if sh.admitted and refusal is not None:
                self._end(share, sh, refusal)
            elif sh.admitted:
                self._announce(share, sh)  # a chain another session adopted reaches this peer
            elif not sh.ended and refusal is None:
                self._open(share)

    def _end(self, share: bytes, sh: _Share, reason: Refusal) -> None:
        sh.admitted, sh.ended, sh.agreed = False, True, False
        self._events.append(ev.AdmissionEnded(share, reason))
        self._give_up_chunks(share)

    def _chain(self, share: bytes) -> MembershipChain:
        chain = self._authorizer.chain(share)
        assert chain is not None, "shares come from the authorizer, which never forgets one"
        return chain

    def _on_chain_head(self, message: ChainHead) -> None:
        if self._authorizer.chain(message.share) is None:
            return  # a share we do not have: nothing to say about it
        sh = self._shares.setdefault(message.share, _Share())
        if sh.ended:
            return
        sh.peer_head = (message.height, message.head_hash)
        chain = self._chain(message.share)
        try:
            check_head(chain, message.height, message.head_hash)
        except Fork as fork:
            self._forked(message.share, sh, int(fork.details["height"]))
            return
        if sh.admitted:
            self._maybe_fetch(message.share, sh)
            self._maybe_agree(message.share, sh)

    def _on_chain_get(self, message: ChainGet) -> None:
        sh = self._shares.get(message.share)
        if sh is None or not sh.admitted:
            return  # nothing beyond the handshake for a share the peer is not admitted to
        chain = self._chain(message.share)
        if message.since_height > chain.height:
            raise SessionViolation(
                f"chain_get from height {message.since_height}, past our head {chain.height}"
            )
        end = message.since_height + MAX_ITEMS_PER_BATCH
        entries = tuple(chain.entries[message.since_height : end])
        self._send(ChainEntries(share=message.share, entries=entries))

    def _on_chain_entries(self, message: ChainEntries) -> None:
        sh = self._shares.get(message.share)
        if sh is None or not sh.fetching:
            raise SessionViolation("chain entries we did not ask for")
        sh.fetching = False
        if sh.ended:
            return
        chain = self._chain(message.share)
        try:
            longer = extend(chain, message.entries)
        except Fork as fork:
            self._forked(message.share, sh, int(fork.details["height"]))
            return
        assert sh.peer_head is not None  # we only ask after a head
        peer_height, peer_hash = sh.peer_head
        if longer.height == chain.height:
            if peer_height <= chain.height:
                # Another session adopted these entries meanwhile: nothing new, nothing wrong.
                self._maybe_agree(message.share, sh)
                return
            raise SessionViolation(
                f"peer announced chain height {peer_height} but sent nothing past ours"
            )
        if peer_height <= longer.height and longer.hashes[peer_height] != peer_hash:
            raise SessionViolation("chain entries do not lead to the head the peer announced")
        self._authorizer.adopt(message.share, longer)
        self._events.append(ev.ChainAdopted(message.share, longer, longer.height))
        # Announces our new head (and asks for more if the peer is still ahead), or ends the
        # peer's admission if the chain we just adopted removed it.
        self._recheck_admission()

    def _forked(self, share: bytes, sh: _Share, height: int, *, tell_peer: bool = True) -> None:
        sh.admitted, sh.ended, sh.agreed, sh.fetching = False, True, False, False
        self._events.append(ev.ChainForked(share, height))
        self._give_up_chunks(share)
        if tell_peer:
            # The peer may not see the fork itself (it waits for entries we will not send).
            fork = Fork(f"the chains of share {share.hex()} fork", height=height, share=share.hex())
            self._send(ErrorMsg.from_error(fork))

    def _maybe_agree(self, share: bytes, sh: _Share) -> None:
        if sh.agreed or not sh.admitted or sh.peer_head is None:
            return
        chain = self._chain(share)
        if sh.peer_head != (chain.height, chain.head_hash) or sh.head_sent != chain.height:
            return
        sh.agreed = True
        self._events.append(ev.ChainsAgreed(share, chain.height))
        self._send(GetEnvelopes(share=share, have=self._envelopes.vector(share)))

    # --- envelopes -----------------------------------------------------------------------------

    def _peer_may_ask(self, share: bytes) -> _Share | None:
        """The share's state if the peer may be answered about it now; heads must come first."""
        sh = self._shares.get(share)
        if sh is None or not sh.admitted:
            return None
        if sh.peer_head is None:
            raise SessionViolation("a request about a share before its chain head")
        return sh

    def _on_get_envelopes(self, message: GetEnvelopes) -> None:
        if message.since_seq is not None:
            raise SessionViolation("relay cursors (since_seq) mean nothing between peers")
        sh = self._peer_may_ask(message.share)
        if sh is None:
            return
        have = message.have if message.have is not None else VersionVector()
        sh.peer_vector = have
        found = self._envelopes.envelopes_after(message.share, have)
        self._send_envelopes(message.share, sh, found, message.limit)

    def _send_envelopes(
        self, share: bytes, sh: _Share, envelopes: Iterable[Envelope], per_push: int
    ) -> int:
        sent = 0
        for batch in _batches(envelopes, per_push, self.limits.max_push_bytes):
            self._send(PushEnvelopes(envelopes=tuple(batch)))
            sent += len(batch)
            vector = sh.peer_vector or VersionVector()
            for envelope in batch:
                header = envelope.header
                if header.counter > vector.get(header.device):
                    vector = vector.with_counter(header.device, header.counter)
            sh.peer_vector = vector
        return sent

    def _on_push_envelopes(self, message: PushEnvelopes) -> None:
        by_share: dict[bytes, list[Envelope]] = {}
        for envelope in message.envelopes:
            by_share.setdefault(envelope.header.share, []).append(envelope)
        for share, envelopes in by_share.items():
            sh = self._peer_may_ask(share)
            if sh is None:
                continue  # not admitted for that share: its envelopes are not taken either
            self._events.append(ev.EnvelopesReceived(share, tuple(envelopes)))

    def _push(self, share: bytes, envelopes: Sequence[Envelope]) -> int:
        sh = self._shares.get(share)
        if sh is None or not (sh.admitted and sh.agreed):
            return 0
        vector = sh.peer_vector or VersionVector()
        fresh = [e for e in envelopes if e.header.counter > vector.get(e.header.device)]
        return self._send_envelopes(share, sh, fresh, MAX_ITEMS_PER_BATCH)

    # --- chunks --------------------------------------------------------------------------------

    def _want_chunks(self, share: bytes, chunk_ids: list[bytes]) -> list[bytes]:
        sh = self._shares.get(share)
        if sh is None or not (sh.admitted and sh.agreed):
            raise NotAdmitted("this share is not open with the peer")
        new = [c for c in dict.fromkeys(chunk_ids) if c not in self._outstanding]
        if len(self._outstanding) + len(new) > self.limits.max_outstanding_chunks:
            raise ValueError(
                f"at most {self.limits.max_outstanding_chunks} chunks may be pending per peer"
            )
        step = self.limits.max_chunks_per_request
        for i in range(0, len(new), step):
            self._send(WantBlocks(share=share, block_ids=tuple(new[i : i + step])))
        for chunk_id in new:
            self._outstanding[chunk_id] = share
        return new

    def _on_want_blocks(self, message: WantBlocks) -> None:
        if len(message.block_ids) > self.limits.max_chunks_per_request:
            raise SessionViolation(
                f"{len(message.block_ids)} chunks in one request; the limit is "
                f"{self.limits.max_chunks_per_request}"
            )
        if self._peer_may_ask(message.share) is None:
            return
        missing = []
        for chunk_id in dict.fromkeys(message.block_ids):
            data = self._chunks.chunk(message.share, chunk_id)
            if data is None:
                missing.append(chunk_id)
            else:
                self._send(BlockData(share=message.share, block_id=chunk_id, data=data))
        if missing:
            self._send(HaveBlocksReply(share=message.share, present=(), missing=tuple(missing)))

    def _on_block_data(self, message: BlockData) -> None:
        if self._outstanding.get(message.block_id) != message.share:
            raise SessionViolation("a chunk we did not ask for")
        if not self._verify_chunk(message.share, message.block_id, message.data):
            raise ChunkMismatch(f"chunk {message.block_id.hex()[:16]}… does not match its id")
        del self._outstanding[message.block_id]
        self._events.append(ev.ChunkReceived(message.share, message.block_id, message.data))

    def _on_have_blocks_reply(self, message: HaveBlocksReply) -> None:
        if message.present:
            raise SessionViolation("a LAN peer sends chunks, not claims to have them")
        for chunk_id in message.missing:
            if self._outstanding.get(chunk_id) != message.share:
                raise SessionViolation("a chunk we did not ask for")
        for chunk_id in message.missing:
            del self._outstanding[chunk_id]
        self._events.append(ev.ChunksUnavailable(message.share, message.missing))

    def _give_up_chunks(self, share: bytes | None = None) -> None:
        by_share: dict[bytes, list[bytes]] = {}
        for chunk_id, owner in list(self._outstanding.items()):
            if share is None or owner == share:
                by_share.setdefault(owner, []).append(chunk_id)
                del self._outstanding[chunk_id]
        for owner, chunk_ids in by_share.items():
            self._events.append(ev.ChunksUnavailable(owner, tuple(chunk_ids)))

    # --- the end -------------------------------------------------------------------------------

    def _on_heartbeat(self, message: Heartbeat) -> None:
        """A keep-alive: the link's idle timer is all it is for."""

    def _on_error(self, message: ErrorMsg) -> None:
        details = dict(message.details)
        share_hex, height = details.get("share"), details.get("height")
        if message.code == Fork.code and isinstance(share_hex, str) and isinstance(height, int):
            share = bytes.fromhex(share_hex) if _is_hex(share_hex) else b""
            sh = self._shares.get(share)
            if sh is not None and not sh.ended:
                self._forked(share, sh, height, tell_peer=False)
            return
        self.close(f"the peer ended the session: {message.message}")

    def _send(self, message: Message) -> None:
        self._outgoing.append(message)


def _is_hex(text: str) -> bool:
    return len(text) % 2 == 0 and all(c in "0123456789abcdef" for c in text)


def _batches(
    envelopes: Iterable[Envelope], max_count: int, max_bytes: int
) -> Iterator[list[Envelope]]:
    batch: list[Envelope] = []
    size = 0
    for envelope in envelopes:
        length = len(envelope.encode())
        if batch and (len(batch) >= max_count or size + length > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(envelope)
        size += length
    if batch:
        yield batch
