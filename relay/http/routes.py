"""HTTP handlers: decode the request, call the service, encode the answer. Nothing else.

Bodies are msgpack maps (``application/msgpack``) unless noted; errors are
``{"error": code, "message": …, **details}`` with the status of :mod:`relay.errors`. Every
``/v1`` path but the two login steps needs ``Authorization: Bearer <token>``; a token in a URL is
refused. Ids in paths are lower-case hex (share 16 bytes, block 32 bytes).

==========================================  ==================================================
``GET /healthz``, ``GET /livez``            readiness (database answers), liveness
``GET /metrics``                            Prometheus text
``POST /v1/auth/challenge``                 → ``{challenge: AuthChallenge bytes}``
``POST /v1/auth/token``                     ``{response: AuthResponse, register?, invite?}``
                                            → ``{token, expires_ms}``
``POST /v1/devices/revoke``                 ``{revocation: DeviceRevocation}`` → ``{new}``
``PUT|GET /v1/recovery``                    ``{blob, verify_key?}``: the wrapped recovery blob
``POST /v1/auth/recover``                   ``{proof: RecoveryProof}`` → ``{blob}`` (no token)
``POST|GET /v1/shares``                     ``{genesis: ChainEntry}`` → ``{share}`` (201);
                                            list → ``{shares: [{share, role, last_seq}]}``
``GET /v1/shares/{s}/chain?from=h``         → ``{entries: [ChainEntry bytes]}``
``POST /v1/shares/{s}/chain``               ``{entry}`` → ``{height}`` (owner-signed extension)
``POST /v1/shares/{s}/envelopes``           ``{envelopes: [{envelope, certificate?}]}``
                                            → ``{seqs, appended, last_seq}``
``GET /v1/shares/{s}/envelopes``            ``?since=&limit=`` → ``{entries: [[seq, envelope,
                                            appended_ms]], last_seq, more}``
``POST /v1/shares/{s}/missing``             ``{vector: {device: counter}, limit?}`` → same page
``GET /v1/shares/{s}/vector``               → ``{vector}`` (the server-side version vector)
``GET /v1/shares/{s}/owed``                 ``?after=&limit=`` → ``{blocks: [id]}``
``POST /v1/shares/{s}/blocks/have``         ``{ids}`` → ``{have: [id]}``
``PUT /v1/shares/{s}/blocks/{b}``           raw sealed bytes → 201 new / 200 had it
``GET /v1/shares/{s}/blocks/{b}``           raw bytes, or 307 to a pre-signed S3 URL
``POST /v1/shares/{s}/blocks/put``          ``{blocks: [[id, bytes]]}`` → ``{new}``
``POST /v1/shares/{s}/blocks/get``          ``{ids}`` → ``{blocks: [[id, bytes]]}``
``GET /v1/shares/{s}/devices``             → ``{devices: [{certificate, wrapped_epoch}]}``: member
                                            devices and the newest epoch wrapped for each (owners)
``POST /v1/shares/{s}/keys``                ``{wraps: [EpochKeyWrap]}`` → ``{stored}`` (owners;
                                            each for an unrevoked member device)
``GET /v1/shares/{s}/keys``                 → ``{wraps: [{wrap, sender}]}``: the newest wraps
                                            addressed to the calling device, with the sender's
                                            DeviceCertificate
``POST /v1/link``                           ``{rendezvous}`` → ``{expires_ms}`` (201)
``POST /v1/link/{r}/request``               ``{request: LinkRequest}`` → ``{}`` (no token)
``GET /v1/link/{r}/request``                ``?timeout_s=`` → ``{request}`` (nil at the timeout)
``POST /v1/link/{r}/grant``                 ``{grant: LinkGrant}`` or ``{refused: reason}`` → ``{}``
``GET /v1/link/{r}/grant``                  ``?timeout_s=`` → ``{grant}`` (nil at the timeout;
                                            no token)
``POST /v1/poll``                           ``{cursors: {share: seq}, timeout_s}`` → ``{heads}``
``GET /v1/ws``                              WebSocket, see :mod:`relay.http.ws`
==========================================  ==================================================
"""

from __future__ import annotations

from aiohttp import web

from protocol.linking import RENDEZVOUS_BYTES
from relay.blocks import ID_BYTES
from relay.envelopes import ForwardedEnvelope
from relay.errors import BadRequest
from relay.http.context import METRICS, SERVICE, SETTINGS, principal_of
from relay.http.wire import (
    field_bytes,
    field_counters,
    field_int,
    field_list,
    hex_id,
    query_int,
    read_map,
    respond,
)
from relay.http.ws import recheck_user
from relay.service import LogPage

SHARE_ID_BYTES = 16
IMMUTABLE = "private, max-age=31536000, immutable"


def _share(request: web.Request) -> str:
    return hex_id(request.match_info["share"], SHARE_ID_BYTES, "share id").hex()


async def _body(request: web.Request) -> dict[str, object]:
    return await read_map(request, request.app[SETTINGS].max_request_bytes)


async def healthz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    try:
        await service.db.ping()
    except Exception:
        return web.json_response({"status": "unavailable", "database": "down"}, status=503)
    return web.json_response({"status": "ok"})


async def livez(request: web.Request) -> web.Response:
    """Liveness: the process answers (never the database: a database outage must not restart
    every replica at once)."""
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[METRICS].render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def challenge(request: web.Request) -> web.Response:
    issued = await request.app[SERVICE].challenge()
    return respond({"challenge": issued.encode()})


async def token(request: web.Request) -> web.Response:
    body = await _body(request)
    register = body.get("register", False)
    invite = body.get("invite")
    if not isinstance(register, bool) or not (invite is None or isinstance(invite, str)):
        raise BadRequest("register must be a boolean and invite a string")
    issued = await request.app[SERVICE].login(
        field_bytes(body, "response") or b"", register=register, invite=invite
    )
    return respond({"token": issued.token, "expires_ms": issued.expires_ms})


async def revoke(request: web.Request) -> web.Response:
    body = await _body(request)
    principal = principal_of(request)
    new = await request.app[SERVICE].revoke_device(
        principal, field_bytes(body, "revocation") or b""
    )
    recheck_user(request.app, principal.user_id)  # the revoked device's sockets close now
    return respond({"new": new})


async def put_recovery(request: web.Request) -> web.Response:
    body = await _body(request)
    await request.app[SERVICE].put_recovery(
        principal_of(request),
        field_bytes(body, "blob") or b"",
        field_bytes(body, "verify_key", optional=True),
    )
    return respond({})


async def claim_recovery(request: web.Request) -> web.Response:
    body = await _body(request)
    blob = await request.app[SERVICE].claim_recovery(field_bytes(body, "proof") or b"")
    return respond({"blob": blob})


async def get_recovery(request: web.Request) -> web.Response:
    blob = await request.app[SERVICE].get_recovery(principal_of(request))
    return respond({"blob": blob})


async def create_share(request: web.Request) -> web.Response:
    body = await _body(request)
    share_id = await request.app[SERVICE].create_share(
        principal_of(request), field_bytes(body, "genesis") or b""
    )
    return respond({"share": share_id}, status=201)


async def list_shares(request: web.Request) -> web.Response:
    shares = await request.app[SERVICE].list_shares(principal_of(request))
    return respond(
        {"shares": [{"share": s.share_id, "role": s.role, "last_seq": s.last_seq} for s in shares]}
    )


async def get_chain(request: web.Request) -> web.Response:
    entries = await request.app[SERVICE].chain_entries(
        principal_of(request), _share(request), query_int(request, "from", 0)
    )
    return respond({"entries": entries})


async def extend_chain(request: web.Request) -> web.Response:
    body = await _body(request)
    height = await request.app[SERVICE].extend_chain(
        principal_of(request), _share(request), field_bytes(body, "entry") or b""
    )
    return respond({"height": height})


async def append(request: web.Request) -> web.Response:
    body = await _body(request)
    items = []
    for raw in field_list(body, "envelopes"):
        if not isinstance(raw, dict):
            raise BadRequest("each envelope is a map of envelope (and certificate)")
        items.append(
            ForwardedEnvelope(
                field_bytes(raw, "envelope") or b"",
                field_bytes(raw, "certificate", optional=True),
            )
        )
    result = await request.app[SERVICE].append(principal_of(request), _share(request), items)
    answer: dict[str, object] = {
        "seqs": list(result.seqs),
        "appended": result.appended,
        "last_seq": result.last_seq,
    }
    if result.stamp_ms is not None:
        answer["appended_ms"] = result.stamp_ms
    return respond(answer)


def _page(page: LogPage) -> web.Response:
    return respond(
        {
            "entries": [[e.seq, e.body, e.appended_ms] for e in page.entries],
            "last_seq": page.last_seq,
            "more": page.more,
            "chain_height": page.chain_height,
        }
    )


async def read_log(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    page = await request.app[SERVICE].read_log(
        principal_of(request),
        _share(request),
        query_int(request, "since", 0),
        query_int(request, "limit", settings.page_size_max),
    )
    return _page(page)


async def read_missing(request: web.Request) -> web.Response:
    body = await _body(request)
    page = await request.app[SERVICE].read_missing(
        principal_of(request),
        _share(request),
        field_counters(body, "vector"),
        field_int(body, "limit", request.app[SETTINGS].page_size_max),
    )
    return _page(page)


async def vector(request: web.Request) -> web.Response:
    vv = await request.app[SERVICE].server_vector(principal_of(request), _share(request))
    return respond({"vector": vv})


async def owed(request: web.Request) -> web.Response:
    after = request.query.get("after")
    blocks = await request.app[SERVICE].owed_blocks(
        principal_of(request),
        _share(request),
        hex_id(after, ID_BYTES, "after") if after else None,
        query_int(request, "limit", request.app[SETTINGS].page_size_max),
    )
    return respond({"blocks": blocks})


def _ids(body: dict[str, object], name: str) -> list[bytes]:
    ids = field_list(body, name)
    if not all(isinstance(i, bytes) for i in ids):
        raise BadRequest(f"field {name!r} must be an array of block ids (bytes)")
    return ids


async def have_blocks(request: web.Request) -> web.Response:
    body = await _body(request)
    have = await request.app[SERVICE].have_blocks(
        principal_of(request), _share(request), _ids(body, "ids")
    )
    return respond({"have": have})


async def put_block(request: web.Request) -> web.Response:
    block_id = hex_id(request.match_info["block"], ID_BYTES, "block id")
    data = await request.read()
    new = await request.app[SERVICE].put_blocks(
        principal_of(request), _share(request), [(block_id, data)]
    )
    return respond({"new": bool(new)}, status=201 if new else 200)


async def get_block(request: web.Request) -> web.StreamResponse:
    service = request.app[SERVICE]
    principal, share = principal_of(request), _share(request)
    block_id = hex_id(request.match_info["block"], ID_BYTES, "block id")
    where = await service.locate_block(principal, share, block_id)
    if isinstance(where, str):
        raise web.HTTPTemporaryRedirect(where, headers={"Cache-Control": "private, max-age=300"})
    headers = {"Cache-Control": IMMUTABLE, "Content-Type": "application/octet-stream"}
    if where is not None:
        # Blocks are immutable files named by their hash: sendfile, no copy through Python.
        return web.FileResponse(where, headers=headers)
    blocks = await service.get_blocks(principal, share, [block_id])
    return web.Response(body=blocks[block_id], headers={**headers, "ETag": f'"{block_id.hex()}"'})


async def get_blocks(request: web.Request) -> web.Response:
    body = await _body(request)
    blocks = await request.app[SERVICE].get_blocks(
        principal_of(request), _share(request), _ids(body, "ids")
    )
    return respond({"blocks": [[k, v] for k, v in blocks.items()]})


async def put_blocks(request: web.Request) -> web.Response:
    body = await _body(request)
    pairs = []
    for item in field_list(body, "blocks"):
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(x, bytes) for x in item)
        ):
            raise BadRequest("field 'blocks' is an array of [block id, bytes] pairs")
        pairs.append((item[0], item[1]))
    new = await request.app[SERVICE].put_blocks(principal_of(request), _share(request), pairs)
    return respond({"new": new})


async def member_devices(request: web.Request) -> web.Response:
    devices = await request.app[SERVICE].member_devices(principal_of(request), _share(request))
    return respond(
        {
            "devices": [
                {"certificate": d.certificate, "wrapped_epoch": d.wrapped_epoch} for d in devices
            ]
        }
    )


async def put_key_wraps(request: web.Request) -> web.Response:
    body = await _body(request)
    wraps = field_list(body, "wraps")
    if not all(isinstance(w, bytes) for w in wraps):
        raise BadRequest("field 'wraps' must be an array of EpochKeyWrap records (bytes)")
    stored = await request.app[SERVICE].put_key_wraps(principal_of(request), _share(request), wraps)
    return respond({"stored": stored})


async def my_key_wraps(request: web.Request) -> web.Response:
    wraps = await request.app[SERVICE].my_key_wraps(principal_of(request), _share(request))
    return respond({"wraps": [{"wrap": w.wrap, "sender": w.sender_certificate} for w in wraps]})


def _rendezvous(request: web.Request) -> bytes:
    return hex_id(request.match_info["rendezvous"], RENDEZVOUS_BYTES, "rendezvous id")


def _timeout(request: web.Request) -> float:
    return float(query_int(request, "timeout_s", int(request.app[SETTINGS].longpoll_timeout_s)))


async def open_link(request: web.Request) -> web.Response:
    body = await _body(request)
    expires = await request.app[SERVICE].links.open(
        principal_of(request), field_bytes(body, "rendezvous") or b""
    )
    return respond({"expires_ms": expires}, status=201)


async def post_link_request(request: web.Request) -> web.Response:
    body = await _body(request)
    await request.app[SERVICE].links.post_request(
        _rendezvous(request), field_bytes(body, "request") or b""
    )
    return respond({})


async def wait_link_request(request: web.Request) -> web.Response:
    got = await request.app[SERVICE].links.wait_request(
        principal_of(request), _rendezvous(request), _timeout(request)
    )
    return respond({"request": got})


async def answer_link(request: web.Request) -> web.Response:
    body = await _body(request)
    refused = body.get("refused")
    if refused is not None and not isinstance(refused, str):
        raise BadRequest("field 'refused' must be text")
    await request.app[SERVICE].links.answer(
        principal_of(request),
        _rendezvous(request),
        field_bytes(body, "grant", optional=True),
        refused,
    )
    return respond({})


async def wait_link_grant(request: web.Request) -> web.Response:
    got = await request.app[SERVICE].links.wait_grant(_rendezvous(request), _timeout(request))
    return respond({"grant": got})


def add_routes(app: web.Application) -> None:
    share = "/v1/shares/{share}"
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/auth/challenge", challenge)
    app.router.add_post("/v1/auth/token", token)
    app.router.add_post("/v1/devices/revoke", revoke)
    app.router.add_put("/v1/recovery", put_recovery)
    app.router.add_get("/v1/recovery", get_recovery)
    app.router.add_post("/v1/auth/recover", claim_recovery)
    app.router.add_post("/v1/link", open_link)
    app.router.add_post("/v1/link/{rendezvous}/request", post_link_request)
    app.router.add_get("/v1/link/{rendezvous}/request", wait_link_request)
    app.router.add_post("/v1/link/{rendezvous}/grant", answer_link)
    app.router.add_get("/v1/link/{rendezvous}/grant", wait_link_grant)
    app.router.add_post("/v1/shares", create_share)
    app.router.add_get("/v1/shares", list_shares)
    app.router.add_get(f"{share}/chain", get_chain)
    app.router.add_post(f"{share}/chain", extend_chain)
    app.router.add_post(f"{share}/envelopes", append)
    app.router.add_get(f"{share}/envelopes", read_log)
    app.router.add_post(f"{share}/missing", read_missing)
    app.router.add_get(f"{share}/vector", vector)
    app.router.add_get(f"{share}/owed", owed)
    app.router.add_post(f"{share}/blocks/have", have_blocks)
    app.router.add_post(f"{share}/blocks/get", get_blocks)
    app.router.add_post(f"{share}/blocks/put", put_blocks)
    app.router.add_get(f"{share}/devices", member_devices)
    app.router.add_post(f"{share}/keys", put_key_wraps)
    app.router.add_get(f"{share}/keys", my_key_wraps)
    app.router.add_put(f"{share}/blocks/{{block}}", put_block)
    app.router.add_get(f"{share}/blocks/{{block}}", get_block)
