"""A user who lost every device gets the recovery blob back with the recovery code alone."""

from __future__ import annotations

import dataclasses
import time

from protocol.auth import AuthChallenge
from protocol.recovery import (
    RecoveryBlob,
    new_recovery_code,
    prove_recovery,
    recovery_verify_key,
    unwrap_user_key,
    wrap_user_key,
)

from .conftest import RelayUnderTest
from .helpers import Answer, Api, login, new_device


def _now_ms() -> int:
    return time.time_ns() // 10**6


async def _challenge(api: Api) -> AuthChallenge:
    return AuthChallenge.decode((await api.call("POST", "/v1/auth/challenge")).body["challenge"])


async def _claim(api: Api, code: str, *, origin: str | None = None) -> tuple[Answer, bytes]:
    challenge = await _challenge(api)
    proof = prove_recovery(code, origin or challenge.origin, challenge.server_nonce, _now_ms())
    answer = await api.call("POST", "/v1/auth/recover", {"proof": proof.encode()})
    return answer, proof.encode()


async def test_the_code_alone_gets_the_blob_back(relay: RelayUnderTest) -> None:
    api = relay.api
    device = new_device()
    assert (await login(api, device)).status == 200
    code = new_recovery_code()
    blob = wrap_user_key(device.user, code).encode()
    put = await api.call(
        "PUT",
        "/v1/recovery",
        {"blob": blob, "verify_key": recovery_verify_key(code)},
        token=device.token,
    )
    assert put.status == 200, put.body

    # No token, no device: only the code.
    answer, proof = await _claim(api, code)
    assert answer.status == 200, answer.body
    assert answer.body["blob"] == blob
    user = unwrap_user_key(RecoveryBlob.decode(answer.body["blob"]), code)
    assert user.user_id == device.user.user_id

    # The same proof again: its challenge is spent.
    replayed = await api.call("POST", "/v1/auth/recover", {"proof": proof})
    assert (replayed.status, replayed.code) == (401, "unauthenticated")
    assert "blob" not in replayed.body

    # A wrong code proves a key no account registered.
    wrong, _ = await _claim(api, new_recovery_code())
    assert (wrong.status, wrong.code) == (404, "not_found")
    assert "blob" not in wrong.body

    # A proof made for another relay is refused here.
    elsewhere, _ = await _claim(api, code, origin="https://other-relay.example")
    assert elsewhere.status == 401
    assert "blob" not in elsewhere.body


async def test_bad_recovery_requests_are_refused_and_change_nothing(
    relay: RelayUnderTest,
) -> None:
    api = relay.api
    alice, mallory = new_device(), new_device()
    for device in (alice, mallory):
        assert (await login(api, device)).status == 200
    code = new_recovery_code()
    blob = wrap_user_key(alice.user, code).encode()
    verify_key = recovery_verify_key(code)
    assert (
        await api.call(
            "PUT", "/v1/recovery", {"blob": blob, "verify_key": verify_key}, token=alice.token
        )
    ).status == 200

    # Another account cannot claim Alice's recovery key for its own blob.
    taken = await api.call(
        "PUT", "/v1/recovery", {"blob": b"x" * 72, "verify_key": verify_key}, token=mallory.token
    )
    assert (taken.status, taken.code) == (409, "conflict")
    short = await api.call(
        "PUT", "/v1/recovery", {"blob": blob, "verify_key": b"short"}, token=alice.token
    )
    assert (short.status, short.code) == (400, "bad_request")

    challenge = await _challenge(api)
    proof = prove_recovery(code, challenge.origin, challenge.server_nonce, _now_ms())
    forged = dataclasses.replace(proof, sig=bytes(64)).encode()
    refused = await api.call("POST", "/v1/auth/recover", {"proof": forged})
    assert (refused.status, refused.code) == (400, "bad_signature")
    stale = prove_recovery(code, challenge.origin, challenge.server_nonce, _now_ms() - 3_600_000)
    assert (await api.call("POST", "/v1/auth/recover", {"proof": stale.encode()})).status == 401
    garbage = await api.call("POST", "/v1/auth/recover", {"proof": b"\x93not a proof"})
    assert (garbage.status, garbage.code) == (400, "malformed")
    missing = await api.call("POST", "/v1/auth/recover", {})
    assert missing.status == 400

    # After all that, the blob is still Alice's and the code still claims it.
    answer, _ = await _claim(api, code)
    assert answer.body["blob"] == blob
