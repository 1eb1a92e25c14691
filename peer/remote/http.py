"""The relay client over HTTP (aiohttp): login, the share, log and block API, with retries.

Login: the device asks for a challenge, answers it with a statement it signs itself (naming the
URL it dialled as origin) and gets a short-lived JWT, sent in the Authorization header and
renewed a minute before it expires (or at once when the relay says ``unauthenticated``). Link
trouble — refused or reset connections, timeouts, 5xx, 429 — is retried with exponential backoff
and jitter from the injected random source; after ``Backoff.attempts`` tries it surfaces as
``RelayUnreachable`` (at once, inside ``peer.remote.link.relay_fail_fast``, when no connection
opens or no answer comes in time). Typed refusals surface at once as ``RelayRefused``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp

from peer.errors import RelayRefused, RelayUnreachable
from peer.remote.backoff import DEFAULT_BACKOFF, Backoff
from peer.remote.link import (
    AddressedWrap,
    AppendAck,
    LogPage,
    MemberDevice,
    RemoteShare,
    failing_fast,
)
from peer.remote.notify import Notifications
from peer.remote.pages import answer_field as _field
from peer.remote.pages import parse_page
from peer.remote.ratelimit import Bandwidth
from protocol.auth import AuthChallenge, answer_challenge
from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from protocol.keys import CertifiedDevice
from seams import Clock, RandomSource

CONTENT_TYPE = "application/msgpack"
REFRESH_MARGIN_MS = 60_000
MAX_ANSWER_BYTES = 64 << 20
SMALL_BLOCK_BYTES = 256 << 10  # blocks up to this size travel together in one request
BATCH_BYTES = 2 << 20  # more, smaller batches: the relay stores a batch one block at a time
PUT_IN_FLIGHT = 8
WRAPS_PER_REQUEST = 256  # the relay's limit


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"a relay URL starts with http:// or https://, got {url!r}")
    return url


def _no_relay(exc: BaseException | None) -> bool:
    """Whether a transport error says the relay is not there: no connection could be opened, or
    no answer came in time. A connection dropped under a request is not enough: most often it
    is a kept-alive one the relay closed meanwhile, and a new one tells."""
    return isinstance(exc, aiohttp.ClientConnectorError | TimeoutError)


def _tcp_connector() -> aiohttp.BaseConnector:
    return aiohttp.TCPConnector(limit=16)


class HttpRelayLink:
    """A :class:`~peer.remote.link.RelayLink` for one device at one relay URL."""

    def __init__(
        self,
        url: str,
        device: CertifiedDevice,
        *,
        clock: Clock,
        rng: RandomSource,
        backoff: Backoff = DEFAULT_BACKOFF,
        upload: Bandwidth | None = None,
        download: Bandwidth | None = None,
        timeout_s: float = 60.0,
        connector_factory: Callable[[], aiohttp.BaseConnector] | None = None,
    ) -> None:
        self.base = normalize_url(url)
        self.device = device
        self.clock = clock
        self.rng = rng
        self.backoff = backoff
        self.upload = upload or Bandwidth(clock)
        self.download = download or Bandwidth(clock)
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10)
        # How connections are opened: TCP by default; a simulated network in simulations.
        self.connector_factory = connector_factory or _tcp_connector
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_expires_ms = 0
        self._login_lock = asyncio.Lock()
        self.register = False
        self.invite: str | None = None
        self.notifications = Notifications(self)
        self.bytes_up = 0
        self.bytes_down = 0

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout, connector=self.connector_factory()
            )
        return self._session

    async def close(self) -> None:
        await self.notifications.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def token(self) -> str:
        if self._token is None or self.clock.now_ms() > self._token_expires_ms - REFRESH_MARGIN_MS:
            async with self._login_lock:
                if (
                    self._token is None
                    or self.clock.now_ms() > self._token_expires_ms - REFRESH_MARGIN_MS
                ):
                    await self.login()
        assert self._token is not None
        return self._token

    async def token_outliving(self, expires_ms: int) -> tuple[str, int]:
        """A token that expires after ``expires_ms`` (logging in again unless the current one
        does), and its expiry: what an open notification socket renews itself with."""
        async with self._login_lock:
            if self._token is None or self._token_expires_ms <= expires_ms:
                await self.login()
            assert self._token is not None
            return self._token, self._token_expires_ms

    async def login(self, *, register: bool | None = None, invite: str | None = None) -> None:
        """Prove this device's key to the relay and take a fresh token.

        A server nonce is single-use: a token request whose answer was lost cannot be sent
        again, so every attempt starts over with a fresh challenge.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._login_once(register=register, invite=invite)
                return
            except RelayUnreachable as exc:
                if attempt >= self.backoff.attempts or (
                    failing_fast() and _no_relay(exc.__cause__)
                ):
                    raise
                await self.clock.sleep(self.backoff.delay(attempt, self.rng))

    async def _login_once(self, *, register: bool | None, invite: str | None) -> None:
        answer = await self._send("POST", "/v1/auth/challenge", None, auth=False, retry=False)
        try:
            challenge = AuthChallenge.decode(_field(answer, "challenge", bytes))
        except ProtocolError as exc:
            raise RelayUnreachable(
                f"the relay at {self.base} sent a challenge this device cannot read: {exc}",
                hint="check the URL points at a driftsync relay",
            ) from exc
        response = answer_challenge(
            self.device, self.base, challenge.server_nonce, self.clock.now_ms(), self.rng.bytes
        )
        body: dict[str, Any] = {
            "response": response.encode(),
            "register": self.register if register is None else register,
        }
        if (invite or self.invite) is not None:
            body["invite"] = invite or self.invite
        issued = await self._send("POST", "/v1/auth/token", body, auth=False, retry=False)
        self._token = _field(issued, "token", str)
        self._token_expires_ms = _field(issued, "expires_ms", int)

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        auth: bool = True,
        raw: bytes | None = None,
        retry: bool = True,
    ) -> Any:
        """One request; with ``retry``, transport failures and 5xx/429 answers are retried."""
        data = raw if raw is not None else (pack(body) if body is not None else None)
        relogged = False
        attempt = 0
        while True:
            attempt += 1
            headers = {"Content-Type": CONTENT_TYPE}
            if auth:
                headers["Authorization"] = f"Bearer {await self.token()}"
            try:
                async with self.session.request(
                    method, self.base + path, data=data, headers=headers
                ) as resp:
                    if (resp.content_length or 0) > MAX_ANSWER_BYTES:
                        raise RelayUnreachable(
                            f"the relay's answer of {resp.content_length} bytes is too large"
                        )
                    payload = await resp.read()
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
                    is_msgpack = resp.headers.get("Content-Type", "").startswith(CONTENT_TYPE)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if (
                    not retry
                    or attempt >= self.backoff.attempts
                    or (failing_fast() and _no_relay(exc))
                ):
                    raise RelayUnreachable(
                        f"cannot reach the relay at {self.base}: {exc or type(exc).__name__}",
                        hint="check the network and the relay URL; drift retries by itself",
                    ) from exc
                await self.clock.sleep(self.backoff.delay(attempt, self.rng))
                continue
            self.bytes_down += len(payload)
            decoded: Any = None
            if is_msgpack and payload:
                try:
                    decoded = unpack(payload, max_bytes=MAX_ANSWER_BYTES)
                except ProtocolError:
                    decoded = None
            if status < 300:
                return decoded if decoded is not None else payload
            error = decoded if isinstance(decoded, dict) else {}
            code = str(error.get("error", "unavailable" if status >= 500 else "refused"))
            if status >= 500 or status == 429:
                if not retry or attempt >= self.backoff.attempts:
                    raise RelayUnreachable(
                        f"the relay at {self.base} keeps failing ({status} {code})",
                        hint="the relay is overloaded or down; drift retries by itself",
                    )
                delay = self.backoff.delay(attempt, self.rng)
                if retry_after and retry_after.isdigit():
                    delay = max(delay, float(retry_after))
                await self.clock.sleep(min(delay, self.backoff.cap_s))
                continue
            if status == 401 and auth and not relogged and code == "unauthenticated":
                relogged = True
                self._token = None
                continue
            details = {k: v for k, v in error.items() if k not in ("error", "message")}
            raise RelayRefused(code, str(error.get("message", f"HTTP {status}")), status, details)

    def _share_path(self, share: str, tail: str) -> str:
        return f"/v1/shares/{share}/{tail}"

    # -- shares and chains -----------------------------------------------------------------------

    async def create_share(self, genesis: bytes) -> str:
        answer = await self._send("POST", "/v1/shares", {"genesis": genesis})
        return _field(answer, "share", str)

    async def list_shares(self) -> list[RemoteShare]:
        answer = await self._send("GET", "/v1/shares", None)
        return [
            RemoteShare(str(s["share"]), str(s["role"]), int(s["last_seq"]))
            for s in _field(answer, "shares", list)
        ]

    async def chain(self, share: str, from_height: int = 0) -> list[bytes]:
        answer = await self._send("GET", self._share_path(share, f"chain?from={from_height}"), None)
        return [bytes(e) for e in _field(answer, "entries", list)]

    async def extend_chain(self, share: str, entry: bytes) -> int:
        answer = await self._send("POST", self._share_path(share, "chain"), {"entry": entry})
        return _field(answer, "height", int)

    # -- key wraps -------------------------------------------------------------------------------

    async def member_devices(self, share: str) -> list[MemberDevice]:
        answer = await self._send("GET", self._share_path(share, "devices"), None)
        out = []
        for item in _field(answer, "devices", list):
            epoch = item.get("wrapped_epoch") if isinstance(item, dict) else None
            wrapped = epoch if isinstance(epoch, int) else None
            out.append(MemberDevice(_field(item, "certificate", bytes), wrapped))
        return out

    async def put_key_wraps(self, share: str, wraps: Sequence[bytes]) -> int:
        stored = 0
        for start in range(0, len(wraps), WRAPS_PER_REQUEST):
            answer = await self._send(
                "POST",
                self._share_path(share, "keys"),
                {"wraps": list(wraps[start : start + WRAPS_PER_REQUEST])},
            )
            stored += _field(answer, "stored", int)
        return stored

    async def key_wraps(self, share: str) -> list[AddressedWrap]:
        answer = await self._send("GET", self._share_path(share, "keys"), None)
        return [
            AddressedWrap(_field(item, "wrap", bytes), _field(item, "sender", bytes))
            for item in _field(answer, "wraps", list)
        ]

    # -- the log ---------------------------------------------------------------------------------

    async def append(
        self, share: str, envelopes: Sequence[tuple[bytes, bytes | None]]
    ) -> AppendAck:
        items: list[dict[str, bytes]] = []
        for envelope, certificate in envelopes:
            item = {"envelope": envelope}
            if certificate is not None:
                item["certificate"] = certificate
            items.append(item)
        answer = await self._send(
            "POST", self._share_path(share, "envelopes"), {"envelopes": items}
        )
        self.bytes_up += sum(len(e) for e, _ in envelopes)
        stamp = answer.get("appended_ms")
        return AppendAck(
            tuple(int(s) for s in _field(answer, "seqs", list)),
            _field(answer, "appended", int),
            _field(answer, "last_seq", int),
            stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else None,
        )

    async def read_log(self, share: str, since: int, limit: int = 1000) -> LogPage:
        answer = await self._send(
            "GET", self._share_path(share, f"envelopes?since={since}&limit={limit}"), None
        )
        return parse_page(answer)

    async def read_missing(
        self, share: str, vector: Mapping[str, int], limit: int = 1000
    ) -> LogPage:
        answer = await self._send(
            "POST", self._share_path(share, "missing"), {"vector": dict(vector), "limit": limit}
        )
        return parse_page(answer)

    async def server_vector(self, share: str) -> dict[str, int]:
        answer = await self._send("GET", self._share_path(share, "vector"), None)
        return {str(k): int(v) for k, v in _field(answer, "vector", dict).items()}

    # -- blocks ----------------------------------------------------------------------------------

    async def have_blocks(self, share: str, block_ids: Sequence[bytes]) -> set[bytes]:
        have: set[bytes] = set()
        ids = list(dict.fromkeys(block_ids))
        for start in range(0, len(ids), 5000):
            answer = await self._send(
                "POST", self._share_path(share, "blocks/have"), {"ids": ids[start : start + 5000]}
            )
            have.update(bytes(b) for b in _field(answer, "have", list))
        return have

    async def put_blocks(self, share: str, blocks: Sequence[tuple[bytes, bytes]]) -> int:
        """Small blocks travel in batches, large ones one per request; several in flight."""
        requests: list[list[tuple[bytes, bytes]]] = []
        batch: list[tuple[bytes, bytes]] = []
        size = 0
        for block_id, data in blocks:
            if len(data) > SMALL_BLOCK_BYTES:
                requests.append([(block_id, data)])
                continue
            if batch and size + len(data) > BATCH_BYTES:
                requests.append(batch)
                batch, size = [], 0
            batch.append((block_id, data))
            size += len(data)
        if batch:
            requests.append(batch)
        gate = asyncio.Semaphore(PUT_IN_FLIGHT)

        async def one(group: list[tuple[bytes, bytes]]) -> int:
            async with gate:
                await self.upload.take(sum(len(d) for _, d in group))
                if len(group) == 1 and len(group[0][1]) > SMALL_BLOCK_BYTES:
                    block_id, data = group[0]
                    answer = await self._send(
                        "PUT", self._share_path(share, f"blocks/{block_id.hex()}"), None, raw=data
                    )
                    new = 1 if _field(answer, "new", bool) else 0
                else:
                    answer = await self._send(
                        "POST",
                        self._share_path(share, "blocks/put"),
                        {"blocks": [[b, d] for b, d in group]},
                    )
                    new = _field(answer, "new", int)
                self.bytes_up += sum(len(d) for _, d in group)
                return new

        return sum(await asyncio.gather(*(one(g) for g in requests)))

    async def get_blocks(self, share: str, block_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        ids = list(dict.fromkeys(block_ids))
        for start in range(0, len(ids), 64):
            answer = await self._send(
                "POST", self._share_path(share, "blocks/get"), {"ids": ids[start : start + 64]}
            )
            for block_id, data in _field(answer, "blocks", list):
                out[bytes(block_id)] = bytes(data)
                await self.download.take(len(data))
        return out

    async def get_block(self, share: str, block_id: bytes) -> bytes:
        data = await self._send("GET", self._share_path(share, f"blocks/{block_id.hex()}"), None)
        if not isinstance(data, bytes):
            raise RelayUnreachable("the relay answered a block request with something else")
        await self.download.take(len(data))
        return data

    # -- account ---------------------------------------------------------------------------------

    # -- device linking (the side that shows the code; see peer.device.linking) ----------------

    async def open_link(self, rendezvous: bytes) -> int:
        """Open the rendezvous a link code derives; when it expires (ms)."""
        answer = await self._send("POST", "/v1/link", {"rendezvous": rendezvous})
        return _field(answer, "expires_ms", int)

    async def wait_link_request(self, rendezvous: bytes, timeout_s: int) -> bytes | None:
        answer = await self._send(
            "GET", f"/v1/link/{rendezvous.hex()}/request?timeout_s={timeout_s}", None
        )
        request = answer.get("request") if isinstance(answer, dict) else None
        return request if isinstance(request, bytes) else None

    async def answer_link(
        self, rendezvous: bytes, *, grant: bytes | None = None, refused: str | None = None
    ) -> None:
        body: dict[str, Any] = {"grant": grant} if grant is not None else {"refused": refused}
        await self._send("POST", f"/v1/link/{rendezvous.hex()}/grant", body)

    async def revoke_device(self, statement: bytes) -> bool:
        answer = await self._send("POST", "/v1/devices/revoke", {"revocation": statement})
        return _field(answer, "new", bool)

    async def put_recovery(self, blob: bytes, verify_key: bytes | None = None) -> None:
        body: dict[str, Any] = {"blob": blob}
        if verify_key is not None:
            body["verify_key"] = verify_key  # lets the code alone claim the blob back
        await self._send("PUT", "/v1/recovery", body)

    async def get_recovery(self) -> bytes:
        return _field(await self._send("GET", "/v1/recovery", None), "blob", bytes)

    # -- notifications ---------------------------------------------------------------------------

    async def poll(self, cursors: Mapping[str, int], timeout_s: float) -> dict[str, int]:
        answer = await self._send(
            "POST", "/v1/poll", {"cursors": dict(cursors), "timeout_s": timeout_s}
        )
        return {str(k): int(v) for k, v in _field(answer, "heads", dict).items()}

    def known_head(self, share: str) -> tuple[int, int] | None:
        return self.notifications.known(share)

    def pushed_page(self, share: str, since: int) -> LogPage | None:
        return self.notifications.pushed_page(share, since)

    async def wait_heads(self, cursors: Mapping[str, int], timeout_s: float) -> dict[str, int]:
        return await self.notifications.wait(cursors, timeout_s)

    async def ws_connect(self) -> tuple[aiohttp.ClientWebSocketResponse, int]:
        """The notification socket, and when the token it was opened with expires."""
        token = await self.token()
        expires_ms = self._token_expires_ms
        headers = {"Authorization": f"Bearer {token}"}
        sock = await self.session.ws_connect(
            self.base + "/v1/ws", headers=headers, heartbeat=30, max_msg_size=64 * 1024
        )
        return sock, expires_ms
