"""Access tokens: pinned algorithm, audience, lifetime on the relay's clock, key rotation."""

from __future__ import annotations

import jwt
import pytest

from relay.errors import Unauthenticated
from relay.settings import JwtKey
from relay.tokens import Principal, TokenAuthority

OLD = JwtKey("k1", b"a" * 32)
NEW = JwtKey("k2", b"b" * 32)
NOW = 1_800_000_000_000
WHO = Principal(user_id="aa" * 32, device_id="bb" * 32)


def authority(*keys: JwtKey, origin: str = "https://relay.test") -> TokenAuthority:
    return TokenAuthority(keys, origin, ttl_s=600)


def test_issue_and_verify() -> None:
    issued = authority(OLD).issue(WHO, NOW)
    assert issued.expires_ms == NOW + 600_000
    assert authority(OLD).verify(issued.token, NOW + 1000) == WHO


def test_expired_future_and_foreign_tokens_are_refused() -> None:
    token = authority(OLD).issue(WHO, NOW).token
    with pytest.raises(Unauthenticated, match="expired"):
        authority(OLD).verify(token, NOW + 600_000)
    with pytest.raises(Unauthenticated):
        authority(OLD).verify(token, NOW - 60_000)
    with pytest.raises(Unauthenticated, match="another relay"):
        authority(OLD, origin="https://other.test").verify(token, NOW)
    with pytest.raises(Unauthenticated, match="unknown key"):
        authority(NEW).verify(token, NOW)
    with pytest.raises(Unauthenticated, match="malformed"):
        authority(OLD).verify("not a token", NOW)


def test_algorithm_is_pinned() -> None:
    claims = {
        "iss": "https://relay.test",
        "aud": "https://relay.test",
        "sub": "x",
        "uid": "y",
        "iat": NOW // 1000,
        "exp": NOW // 1000 + 60,
    }
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
    with pytest.raises(Unauthenticated, match="algorithm"):
        authority(OLD).verify(unsigned, NOW)
    wrong_alg = jwt.encode(claims, OLD.secret * 2, algorithm="HS512", headers={"kid": "k1"})
    with pytest.raises(Unauthenticated, match="algorithm"):
        authority(OLD).verify(wrong_alg, NOW)


def test_too_long_lifetime_is_refused_even_if_signed() -> None:
    claims = {
        "iss": "https://relay.test",
        "aud": "https://relay.test",
        "sub": "x",
        "uid": "y",
        "iat": NOW // 1000,
        "exp": NOW // 1000 + 3600,
    }
    token = jwt.encode(claims, OLD.secret, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(Unauthenticated):
        authority(OLD).verify(token, NOW)


def test_rotation_keeps_old_tokens_valid() -> None:
    old_token = authority(OLD).issue(WHO, NOW).token
    rotated = authority(NEW, OLD)
    assert rotated.verify(old_token, NOW) == WHO
    assert jwt.get_unverified_header(rotated.issue(WHO, NOW).token)["kid"] == "k2"
