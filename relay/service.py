"""The relay's core, independent of HTTP: decoded requests in, responses or typed errors out.

A :class:`RelayService` is built from injected parts (database, block store, notifier, clock,
random source, executor), so the aiohttp adapter and the simulations drive the same code. Every
method that touches a share takes the authenticated :class:`Principal` and checks the caller's
role first; a refused request changes nothing.

Roles: members (owner, editor, viewer) read the log, chain and blocks; owners and editors
publish envelopes and upload blocks; the chain decides who may extend the chain. A device whose
user revoked it, or whose user was removed from the share, gets nothing new.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from protocol.auth import AuthChallenge, AuthResponse, make_challenge, verify_auth
from protocol.chain import WRITERS, ChainEntry, MembershipChain, Role, verify_chain
from protocol.envelope import Envelope
from protocol.errors import ProtocolError
from protocol.keys import DeviceCertificate, DeviceRevocation
from protocol.keyschedule import EpochKeyWrap
from protocol.recovery import RecoveryProof, verify_recovery_proof
from protocol.signing import PUBLIC_KEY_BYTES as RECOVERY_KEY_BYTES
from relay import accounts, envelopes, keywraps, linking, log, membership
from relay.blocks import BlockAccess
from relay.db import Database, Tx
from relay.envelopes import ForwardedEnvelope
from relay.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    DeviceRevoked,
    Forbidden,
    NotFound,
    NotMember,
    PayloadTooLarge,
    QuotaExceeded,
    RegistrationClosed,
    RoleTooLow,
    Unauthenticated,
    from_protocol,
)
from relay.metrics import RelayMetrics
from relay.notify import CHAIN_SUFFIX, Notifier, Subscription, chain_topic
from relay.settings import Settings
from relay.tokens import IssuedToken, Principal, TokenAuthority
from seams import Clock, Executor, RandomSource

logger = logging.getLogger("relay.service")

#: Batches up to this many envelopes verify their signatures on the loop (~60 µs each).
INLINE_VERIFY_MAX = 4
CERTIFICATE_CACHE_MAX = 100_000
MAX_WRAPS_PER_REQUEST = 256  # the protocol's limit of key wraps per message
OWNERS = frozenset({Role.OWNER})


def block_writes(blocks: Sequence[tuple[bytes, bytes]], unit_bytes: int) -> int:
    """What a block upload counts against the write rate limit: one per request, and one more
    per ``unit_bytes`` (the largest block) beyond the first, so a batch of a thousand small
    blocks costs what one large block does, not a thousand writes."""
    total = sum(len(data) for _, data in blocks)
    return max(1, -(-total // unit_bytes))


@dataclass(frozen=True, slots=True)
class LogPage:
    entries: list[log.LogEntry]
    last_seq: int
    more: bool
    # The membership chain's height as of the page: a device fetches the chain only when it moved.
    chain_height: int


@dataclass(frozen=True, slots=True)
class ShareInfo:
    share_id: str
    role: str
    last_seq: int


@dataclass
class RelayService:
    settings: Settings
    db: Database
    blocks: BlockAccess
    notifier: Notifier
    tokens: TokenAuthority
    clock: Clock
    rng: RandomSource
    executor: Executor
    metrics: RelayMetrics = field(default_factory=RelayMetrics)
    chains: membership.ChainCache = field(default_factory=membership.ChainCache)
    _certificates: dict[str, DeviceCertificate] = field(default_factory=dict, repr=False)

    @property
    def links(self) -> linking.Rendezvous:
        """Device-linking rendezvous (see :mod:`relay.linking`)."""
        return linking.Rendezvous(self.db, self.clock, self.settings)

    # -- auth ------------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return self.tokens.origin

    async def challenge(self) -> AuthChallenge:
        now = self.clock.now_ms()
        challenge = make_challenge(self.origin, now, self.rng.bytes)
        async with self.db.write() as tx:
            await accounts.remember_nonce(
                tx, challenge.server_nonce, now + self.settings.auth_nonce_ttl_s * 1000
            )
        return challenge

    async def login(
        self, response: bytes, *, register: bool = False, invite: str | None = None
    ) -> IssuedToken:
        """A token for the device that signed ``response`` (registering its user if asked)."""
        auth = envelopes.decode(AuthResponse, response)
        now = self.clock.now_ms()
        try:
            certificate = await self.executor.run(
                verify_auth,
                auth,
                origin=self.origin,
                server_nonce=auth.server_nonce,
                now_ms=now,
                window_ms=self.settings.auth_clock_skew_s * 1000,
            )
        except ProtocolError as exc:
            raise from_protocol(exc) from exc
        user_id, device_id = certificate.user_id.hex(), certificate.device_id.hex()
        async with self.db.write() as tx:
            if not await accounts.consume_nonce(tx, auth.server_nonce, now):
                raise Unauthenticated("login answers an unknown, expired or used challenge")
            if await accounts.is_revoked(tx, device_id):
                raise DeviceRevoked("this device has been revoked by its user")
            user = await accounts.get_user(tx, user_id)
            if user is None:
                if not register:
                    raise Unauthenticated("no account for this user; register first")
                if self.settings.registration == "invite" and (
                    invite is None or not await accounts.use_invite(tx, invite, user_id)
                ):
                    raise RegistrationClosed("registration needs a valid, unused invite code")
                await accounts.create_user(
                    tx, user_id, certificate.user_key, self.settings.quota_bytes_default, now
                )
            elif user.user_key != certificate.user_key:  # pragma: no cover - ids are key hashes
                raise Unauthenticated("certificate is for another user key")
            await accounts.add_device(
                tx, device_id, user_id, certificate.device_key, certificate.encode(), now
            )
        self.metrics.tokens_issued.inc()
        return self.tokens.issue(Principal(user_id, device_id), now)

    async def authenticate(self, token: str) -> Principal:
        principal = self.tokens.verify(token, self.clock.now_ms())
        await self.authenticate_device(principal)
        return principal

    async def authenticate_device(self, principal: Principal) -> None:
        """Refuse a device revoked (or forgotten) since its token was issued."""
        async with self.db.read() as tx:
            known, revoked = await accounts.device_status(tx, principal.device_id)
        if revoked:
            raise DeviceRevoked("this device has been revoked by its user")
        if not known:
            raise Unauthenticated("unknown device; log in again")

    async def create_invite(self, code: str) -> None:
        async with self.db.write() as tx:
            await accounts.create_invite(tx, code, self.clock.now_ms())

    async def revoke_device(self, principal: Principal, statement: bytes) -> bool:
        """Store the user's signed revocation of one of its devices; True if it was new."""
        revocation = envelopes.decode(DeviceRevocation, statement)
        if revocation.user_id.hex() != principal.user_id:
            raise Forbidden("a device can only be revoked by its own user")
        try:
            await self.executor.run(revocation.verify)
        except ProtocolError as exc:
            raise from_protocol(exc) from exc
        async with self.db.write() as tx:
            return await accounts.revoke(
                tx, revocation.device_id.hex(), principal.user_id, statement, self.clock.now_ms()
            )

    async def put_recovery(
        self, principal: Principal, blob: bytes, verify_key: bytes | None = None
    ) -> None:
        """Keep the user's sealed recovery blob, and the key that proves its code if given (so
        the blob can be claimed with the code alone, see :meth:`claim_recovery`)."""
        if len(blob) > 64 * 1024:
            raise PayloadTooLarge("a recovery blob is at most 64 KiB")
        if verify_key is not None and len(verify_key) != RECOVERY_KEY_BYTES:
            raise BadRequest("verify_key is the 32-byte public recovery key")
        async with self.db.write() as tx:
            await accounts.set_recovery(tx, principal.user_id, blob)
            if verify_key is not None and not await accounts.set_recovery_key(
                tx, principal.user_id, verify_key
            ):
                raise Conflict("another account registered this recovery key; make a new code")

    async def claim_recovery(self, proof_bytes: bytes) -> bytes:
        """The recovery blob for whoever proves the recovery code, device or not.

        The proof answers one of this relay's login challenges (single use, like a login) with
        a signature by the key the code derives; a wrong code proves a key no account has.
        """
        proof = envelopes.decode(RecoveryProof, proof_bytes)
        now = self.clock.now_ms()
        try:
            verify_key = await self.executor.run(
                verify_recovery_proof,
                proof,
                origin=self.origin,
                now_ms=now,
                window_ms=self.settings.auth_clock_skew_s * 1000,
            )
        except ProtocolError as exc:
            raise from_protocol(exc) from exc
        async with self.db.write() as tx:
            if not await accounts.consume_nonce(tx, proof.server_nonce, now):
                raise Unauthenticated("recovery answers an unknown, expired or used challenge")
            blob = await accounts.recovery_by_key(tx, verify_key)
        if blob is None:
            raise NotFound(
                "no account registered this recovery code; check it, or it was replaced by a "
                "newer one"
            )
        return blob

    async def get_recovery(self, principal: Principal) -> bytes:
        async with self.db.read() as tx:
            blob = await accounts.get_recovery(tx, principal.user_id)
        if blob is None:
            raise NotFound("no recovery blob stored for this user")
        return blob

    # -- shares and chains -----------------------------------------------------------------------

    async def create_share(self, principal: Principal, genesis_bytes: bytes) -> str:
        genesis = envelopes.decode(ChainEntry, genesis_bytes)
        chain = await self._verify_chain([genesis])
        if genesis.signer.device_id.hex() != principal.device_id:
            raise Forbidden("the genesis entry must be signed by the calling device")
        share_id = chain.share_id.hex()
        now = self.clock.now_ms()
        async with self.db.write() as tx:
            if await tx.fetchone("SELECT 1 FROM shares WHERE share_id = ?", share_id):
                stored = await membership.entries(tx, share_id, 0)
                if stored and envelopes.decode(ChainEntry, stored[0]) == genesis:
                    # The same genesis again: a resend after a lost answer is harmless.
                    return share_id
                raise AlreadyExists(f"share {share_id} already exists")
            await membership.create_share(tx, share_id, principal.user_id, genesis, now)
            await membership.write_members(tx, share_id, chain)
        return share_id

    async def list_shares(self, principal: Principal) -> list[ShareInfo]:
        async with self.db.read() as tx:
            rows = await membership.shares_of(tx, principal.user_id)
        return [ShareInfo(*row) for row in rows]

    async def chain_entries(
        self, principal: Principal, share_id: str, from_height: int
    ) -> list[bytes]:
        async with self.db.read() as tx:
            await self._require(tx, share_id, principal)
            return await membership.entries(tx, share_id, max(0, from_height))

    async def extend_chain(self, principal: Principal, share_id: str, entry_bytes: bytes) -> int:
        """Append an entry the chain's rules accept as the next one; the new height."""
        entry = envelopes.decode(ChainEntry, entry_bytes)
        if entry.signer.device_id.hex() != principal.device_id:
            raise Forbidden("a chain entry must be signed by the calling device")
        async with self.db.write(group=share_id) as tx:
            await self._require(tx, share_id, principal)
            _, height, _ = await membership.share_row(tx, share_id, lock=True)
            # Extend a copy of the verified chain: the cached one changes only once this
            # transaction has committed (a refused or rolled-back entry never reaches it).
            chain = copy.deepcopy(await self.chains.at_height(tx, share_id, height))
            subject = entry.subject_user_id
            role_before = None if subject is None else chain.role_at(subject)
            try:
                added = chain.append(entry)
            except ProtocolError as exc:
                raise from_protocol(exc, head=chain.height) from exc
            ended = membership.writing_ended(role_before, entry) if added else None
            if ended is not None:
                # Under the share's locked row, as appends are: no envelope lands in between.
                await membership.check_cutoffs(tx, share_id, ended)
            if added:
                await membership.record_entry(tx, share_id, entry)
                await membership.write_members(tx, share_id, chain)
                if entry.revocation is not None:
                    # The user's own signed statement, checked by the chain: the device is
                    # refused everywhere on this relay, not only in this share.
                    await accounts.revoke(
                        tx,
                        entry.revocation.device_id.hex(),
                        entry.revocation.user_id.hex(),
                        entry.revocation.encode(),
                        self.clock.now_ms(),
                    )
        if added:
            self.chains.replace(share_id, chain)
            await self.notifier.publish(chain_topic(share_id), chain.height)
        return chain.height

    async def _verify_chain(self, entries: list[ChainEntry]) -> MembershipChain:
        try:
            return await self.executor.run(verify_chain, entries)
        except ProtocolError as exc:
            raise from_protocol(exc) from exc

    async def _require(
        self, tx: Tx, share_id: str, principal: Principal, roles: frozenset[Role] | None = None
    ) -> Role:
        role = await membership.role_of(tx, share_id, principal.user_id)
        if role is None:
            await membership.share_row(tx, share_id)  # NotFound for an unknown share
            raise NotMember(f"you are not a member of share {share_id}")
        if roles is not None and role not in roles:
            raise RoleTooLow(f"a {role.value} of share {share_id} may not do this")
        return role

    # -- key wraps (see relay.keywraps) ----------------------------------------------------------

    async def member_devices(
        self, principal: Principal, share_id: str
    ) -> list[keywraps.MemberDevice]:
        """The certificates an owner wraps new epoch keys for (with what each already has)."""
        async with self.db.read() as tx:
            await self._require(tx, share_id, principal, OWNERS)
            return await keywraps.member_devices(tx, share_id)

    async def put_key_wraps(
        self, principal: Principal, share_id: str, raw_wraps: Sequence[bytes]
    ) -> int:
        """Keep an owner device's wraps for member devices of the share; how many were kept.

        The relay cannot open a wrap; it checks what it can see: the wrap's share and sender
        (the calling device), an epoch the chain has, and a recipient that is an unrevoked
        device of a member or a member user (see ``relay.keywraps``)."""
        if len(raw_wraps) > MAX_WRAPS_PER_REQUEST:
            raise PayloadTooLarge(f"at most {MAX_WRAPS_PER_REQUEST} key wraps per request")
        wraps = [envelopes.decode(EpochKeyWrap, raw) for raw in raw_wraps]
        async with self.db.write(group=share_id) as tx:
            await self._require(tx, share_id, principal, OWNERS)
            for wrap in wraps:
                if wrap.share.hex() != share_id:
                    raise BadRequest("a key wrap names another share")
                if wrap.sender.hex() != principal.device_id:
                    raise Forbidden("a key wrap must be made by the calling device")
            if not wraps:
                return 0
            _, height, _ = await membership.share_row(tx, share_id)
            chain = await self.chains.at_height(tx, share_id, height)
            recipients = sorted({w.recipient.hex() for w in wraps})
            members = await keywraps.member_device_ids(tx, share_id, recipients)
            members |= await keywraps.member_user_ids(tx, share_id, recipients)
            for wrap in wraps:
                if wrap.epoch > chain.current_epoch:
                    raise BadRequest(
                        f"a key wrap for epoch {wrap.epoch}, which the chain does not have "
                        f"(current epoch {chain.current_epoch})"
                    )
                if wrap.recipient.hex() not in members:
                    raise Forbidden(
                        "a key wrap is addressed to neither a member user nor a device of "
                        "one (or the device is revoked)",
                        device=wrap.recipient.hex(),
                    )
            await keywraps.store(
                tx,
                share_id,
                principal.device_id,
                [
                    (w.recipient.hex(), w.epoch, raw)
                    for w, raw in zip(wraps, raw_wraps, strict=True)
                ],
                self.clock.now_ms(),
            )
        return len(wraps)

    async def my_key_wraps(self, principal: Principal, share_id: str) -> list[keywraps.StoredWrap]:
        """The newest wraps addressed to the calling device (a member's), newest epoch first,
        then those addressed to its user (only that user's devices ever get these)."""
        async with self.db.read() as tx:
            await self._require(tx, share_id, principal)
            mine = await keywraps.addressed_to(tx, share_id, principal.device_id)
            return mine + await keywraps.addressed_to(tx, share_id, principal.user_id)

    # -- the update log --------------------------------------------------------------------------

    async def append(
        self, principal: Principal, share_id: str, items: Sequence[ForwardedEnvelope]
    ) -> log.AppendResult:
        """Verify a batch (see :mod:`relay.envelopes`) and append it, all or nothing; any
        member may forward envelopes, each is judged against its own signer."""
        decoded = envelopes.decode_batch(self.settings, share_id, items)
        certificates = await self._signer_certificates(items, decoded)
        if len(decoded) <= INLINE_VERIFY_MAX:
            # A few signatures verify faster than a hop to a worker thread and back.
            envelopes.verify_signatures(decoded, certificates)
        else:
            await self.executor.run(envelopes.verify_signatures, decoded, certificates)
        now = self.clock.now_ms()
        total_bytes = sum(len(i.envelope) for i in items)
        async with self.db.write(group=share_id) as tx:
            head = await log.locked_head(tx, share_id, principal.user_id)
            if head.role is None:
                raise NotMember(f"you are not a member of share {share_id}")
            chain = await self.chains.at_height(tx, share_id, head.chain_height)
            await accounts.charge_writes(
                tx, principal.user_id, len(items), self.settings.writes_per_minute_per_user, now
            )
            tips = await log.tips(tx, share_id)
            revoked = await accounts.revoked_among(
                tx, list({env.header.device.hex() for env in decoded})
            )
            batch = envelopes.admit(items, decoded, certificates, chain, tips, revoked)
            result = await log.append(
                tx,
                share_id,
                batch,
                now,
                tips=tips,
                locked_last_seq=head.last_seq,
                locked_last_ms=head.last_ms,
            )
            if result.appended:
                await self._charge_bytes(tx, head.owner_user_id, total_bytes)
        if result.appended:
            self.metrics.appends.inc(result.appended)
            self.metrics.envelope_bytes.inc(total_bytes)
            await self.notifier.publish(share_id, result.last_seq)
        self.metrics.resends.inc(len(items) - result.appended)
        return result

    async def _signer_certificates(
        self, items: Sequence[ForwardedEnvelope], decoded: list[Envelope]
    ) -> list[DeviceCertificate]:
        """Each envelope's signer certificate: forwarded with it, or as the device logged in.

        Certificates are immutable per device (revocation is checked separately, in the append's
        transaction), so the ones read from the database are cached.
        """
        out: list[DeviceCertificate] = []
        for item, env in zip(items, decoded, strict=True):
            device = env.header.device.hex()
            if item.certificate is not None:
                out.append(envelopes.decode(DeviceCertificate, item.certificate))
                continue
            cert = self._certificates.get(device)
            if cert is None:
                async with self.db.read() as tx:
                    raw = await accounts.device_certificate(tx, device)
                if raw is None:
                    raise BadRequest(
                        "the relay does not know the device that signed an envelope; "
                        "forward its certificate with it",
                        device=device,
                    )
                cert = DeviceCertificate.decode(raw)
                if len(self._certificates) >= CERTIFICATE_CACHE_MAX:
                    self._certificates.clear()
                self._certificates[device] = cert
            out.append(cert)
        return out

    async def _charge_bytes(self, tx: Tx, owner: str, size: int) -> None:
        changed = await tx.execute(
            "UPDATE users SET used_bytes = used_bytes + ? "
            "WHERE user_id = ? AND used_bytes + ? <= quota_bytes",
            size,
            owner,
            size,
        )
        if changed != 1:
            raise QuotaExceeded("the share owner's storage quota is full")

    async def read_log(
        self, principal: Principal, share_id: str, since: int, limit: int
    ) -> LogPage:
        limit = max(1, min(limit, self.settings.page_size_max))
        async with self.db.read() as tx:
            await self._require(tx, share_id, principal)
            entries = await log.since(tx, share_id, max(0, since), limit)
            _, height, last = await membership.share_row(tx, share_id)
        return LogPage(entries, last, bool(entries) and entries[-1].seq < last, height)

    async def read_missing(
        self, principal: Principal, share_id: str, vector: Mapping[str, int], limit: int
    ) -> LogPage:
        limit = max(1, min(limit, self.settings.page_size_max))
        async with self.db.read() as tx:
            await self._require(tx, share_id, principal)
            entries = await log.missing_from(tx, share_id, vector, limit)
            _, height, last = await membership.share_row(tx, share_id)
        # "more" may be true when only entries the caller already has follow: it asks once more.
        return LogPage(entries, last, bool(entries) and entries[-1].seq < last, height)

    async def server_vector(self, principal: Principal, share_id: str) -> dict[str, int]:
        async with self.db.read() as tx:
            await self._require(tx, share_id, principal)
            return await log.server_vector(tx, share_id)

    async def owed_blocks(
        self, principal: Principal, share_id: str, after: bytes | None, limit: int
    ) -> list[bytes]:
        limit = max(1, min(limit, self.settings.page_size_max))
        async with self.db.read() as tx:
            await self._require(tx, share_id, principal)
            return await log.owed_blocks(tx, share_id, after, limit)

    # -- blocks ----------------------------------------------------------------------------------

    async def have_blocks(
        self, principal: Principal, share_id: str, block_ids: Sequence[bytes]
    ) -> list[bytes]:
        if len(block_ids) > self.settings.page_size_max * 10:
            raise PayloadTooLarge("too many block ids in one request")
        async with self.db.read() as tx:
            await self._require(tx, share_id, principal)
            return await self.blocks.present(tx, share_id, block_ids)

    async def put_blocks(
        self, principal: Principal, share_id: str, blocks: Sequence[tuple[bytes, bytes]]
    ) -> int:
        """Store blocks for a share (verified, idempotent); how many were new to the share."""
        for _, data in blocks:
            if len(data) > self.settings.max_block_bytes:
                raise PayloadTooLarge(f"a block is at most {self.settings.max_block_bytes} bytes")
        async with self.db.read() as tx:
            await self._require(tx, share_id, principal, WRITERS)
        # Stored before it is recorded: a crash in between leaves an unreferenced block (harmless,
        # the resend records it), never a recorded block that is missing.
        await self.blocks.put(blocks)
        now = self.clock.now_ms()
        async with self.db.write() as tx:
            await self._require(tx, share_id, principal, WRITERS)
            owner, _, _ = await membership.share_row(tx, share_id, lock=True)
            await accounts.charge_writes(
                tx,
                principal.user_id,
                block_writes(blocks, self.settings.max_block_bytes),
                self.settings.writes_per_minute_per_user,
                now,
            )
            added, added_bytes = await self.blocks.record(tx, share_id, blocks)
            if added_bytes:
                await self._charge_bytes(tx, owner, added_bytes)
        self.metrics.block_bytes_in.inc(sum(len(d) for _, d in blocks))
        self.metrics.blocks_stored.inc(added)
        return added

    async def get_blocks(
        self, principal: Principal, share_id: str, block_ids: Sequence[bytes]
    ) -> dict[bytes, bytes]:
        async with self.db.read() as tx:
            await self._require(tx, share_id, principal)
            present = set(await self.blocks.present(tx, share_id, block_ids))
        missing = [b for b in block_ids if b not in present]
        if missing:
            raise NotFound(
                "the share has no such block", block_id=missing[0].hex(), count=len(missing)
            )
        out = await self.blocks.fetch(block_ids)
        self.metrics.block_bytes_out.inc(sum(len(v) for v in out.values()))
        return out

    async def locate_block(
        self, principal: Principal, share_id: str, block_id: bytes
    ) -> str | Path | None:
        """Where to serve one block from: a pre-signed URL (S3), a local file (directory store),
        or None (fetch it with :meth:`get_blocks`). The share must hold the block."""
        async with self.db.read() as tx:
            await self._require(tx, share_id, principal)
            if not await self.blocks.present(tx, share_id, [block_id]):
                raise NotFound("the share has no such block", block_id=block_id.hex())
        url = await self.blocks.presigned_url(block_id)
        if url is not None:
            return url
        path = self.blocks.local_path(block_id)
        if path is not None:
            self.metrics.block_bytes_out.inc(path.stat().st_size)
        return path

    # -- notifications ---------------------------------------------------------------------------

    async def follow(
        self, principal: Principal, share_ids: Sequence[str]
    ) -> tuple[dict[str, int], dict[str, int]]:
        """The latest seq and chain height of each share, after checking the caller may follow
        every one."""
        if len(share_ids) > self.settings.subscriber_shares_max:
            raise PayloadTooLarge(
                f"at most {self.settings.subscriber_shares_max} shares per subscription"
            )
        heads: dict[str, int] = {}
        chains: dict[str, int] = {}
        async with self.db.read() as tx:
            for share_id in dict.fromkeys(share_ids):
                await self._require(tx, share_id, principal)
                _, heads_height, last = await membership.share_row(tx, share_id)
                heads[share_id], chains[share_id] = last, heads_height
        return heads, chains

    async def heads(self, principal: Principal, share_ids: Sequence[str]) -> dict[str, int]:
        return (await self.follow(principal, share_ids))[0]

    def subscribe(self, share_ids: Sequence[str], *, chains: bool = False) -> Subscription:
        """Follow shares the caller was checked for (with :meth:`follow`): their logs, and with
        ``chains`` their membership chains too."""
        topics = list(share_ids)
        if chains:
            topics += [chain_topic(s) for s in share_ids]
        return self.notifier.subscribe(topics)

    async def poll(
        self, principal: Principal, cursors: Mapping[str, int], timeout_s: float
    ) -> dict[str, int]:
        """Heads newer than the caller's cursors: at once if any, else when one appears or
        at the (jittered) timeout, whichever is first. Empty means nothing new."""
        heads = await self.heads(principal, list(cursors))
        newer = {s: seq for s, seq in heads.items() if seq > cursors[s]}
        if newer:
            return newer
        jitter = self.rng.uniform(0, self.settings.longpoll_jitter_s)
        timeout_s = min(max(0.0, timeout_s), self.settings.longpoll_timeout_s) + jitter
        sub = self.subscribe(list(cursors))
        try:
            # An append may have landed between reading heads and subscribing: re-read once.
            heads = await self.heads(principal, list(cursors))
            newer = {s: seq for s, seq in heads.items() if seq > cursors[s]}
            deadline = self.clock.monotonic() + timeout_s
            while not newer:
                remaining = deadline - self.clock.monotonic()
                if remaining <= 0:
                    break
                woke = await sub.wait(remaining)
                newer = {s: seq for s, seq in woke.items() if seq > cursors.get(s, 0)}
        finally:
            sub.close()
        self.metrics.notifications.inc(1, "poll")
        return newer

    async def refresh_heads(self) -> int:
        """Deliver to local subscribers every head and chain height the database has but they
        have not heard of (Redis pub/sub may drop messages); how many topics were behind."""
        hub = self.notifier.hub
        shares = sorted({t.removesuffix(CHAIN_SUFFIX) for t in hub.followed()})
        behind = 0
        for start in range(0, len(shares), 500):
            chunk = shares[start : start + 500]
            marks = ",".join("?" * len(chunk))
            async with self.db.read() as tx:
                rows = await tx.fetchall(
                    f"SELECT share_id, last_seq, chain_height FROM shares "
                    f"WHERE share_id IN ({marks})",
                    *chunk,
                )
            for share_id, seq, height in rows:
                behind += bool(hub.deliver(str(share_id), int(seq)))  # type: ignore[call-overload]
                behind += bool(hub.deliver(chain_topic(str(share_id)), int(height)))  # type: ignore[call-overload]
        return behind

    async def count_owed(self) -> int:
        async with self.db.read() as tx:
            return await log.count_owed(tx)
