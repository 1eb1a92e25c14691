"""Access tokens: short-lived JWTs bound to one device, signed with keys all replicas share.

HS256 is pinned (a token naming any other algorithm, ``none`` included, is refused), the audience
and issuer are the relay's origin, and lifetime is at most 15 minutes. The first configured key
signs and every configured key verifies, so keys rotate without logging anyone out: add the new
key second, roll out, move it first, roll out, drop the old one after one token lifetime.
Tokens travel only in the ``Authorization`` header, never in a URL.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from relay.errors import Unauthenticated
from relay.settings import MAX_TOKEN_TTL_S, JwtKey

ALGORITHM = "HS256"
VERIFIED_CACHE_MAX = 50_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a device (and its user), both as lower-case hex of the 32-byte ids."""

    user_id: str
    device_id: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_ms: int


class TokenAuthority:
    def __init__(self, keys: tuple[JwtKey, ...], origin: str, ttl_s: int) -> None:
        if not keys:
            raise ValueError("at least one JWT key is needed")
        if not 0 < ttl_s <= MAX_TOKEN_TTL_S:
            raise ValueError(f"token lifetime must be 1..{MAX_TOKEN_TTL_S} s")
        self._keys = {k.kid: k.secret for k in keys}
        self._signing = keys[0]
        self.origin = origin
        self.ttl_s = ttl_s
        # token → (principal, iat s, exp s): a verified token is only re-checked against the clock.
        self._verified: dict[str, tuple[Principal, int, int]] = {}

    def issue(self, principal: Principal, now_ms: int) -> IssuedToken:
        now_s = now_ms // 1000
        claims = {
            "iss": self.origin,
            "aud": self.origin,
            "sub": principal.device_id,
            "uid": principal.user_id,
            "iat": now_s,
            "nbf": now_s - 5,
            "exp": now_s + self.ttl_s,
        }
        token = jwt.encode(
            claims, self._signing.secret, algorithm=ALGORITHM, headers={"kid": self._signing.kid}
        )
        return IssuedToken(token, (now_s + self.ttl_s) * 1000)

    def verify(self, token: str, now_ms: int) -> Principal:
        """The principal a valid token names; :class:`Unauthenticated` for anything else."""
        cached = self._verified.get(token)
        if cached is not None:
            principal, iat, exp = cached
            if iat - 5 <= now_ms / 1000 < exp:
                return principal
            del self._verified[token]
            raise Unauthenticated("access token expired or not yet valid; log in again")
        principal, iat, exp = self._verify_signed(token, now_ms)
        if len(self._verified) >= VERIFIED_CACHE_MAX:
            self._verified.clear()  # crude but bounded; a miss only costs one HMAC check
        self._verified[token] = (principal, iat, exp)
        return principal

    def expires_ms(self, token: str, now_ms: int) -> int:
        """When a valid token expires (verifying it if it was not yet)."""
        self.verify(token, now_ms)
        return self._verified[token][2] * 1000

    def _verify_signed(self, token: str, now_ms: int) -> tuple[Principal, int, int]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("malformed access token") from exc
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated("access token uses an algorithm this relay does not accept")
        secret = self._keys.get(str(header.get("kid")))
        if secret is None:
            raise Unauthenticated("access token is signed with an unknown key; log in again")
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=self.origin,
                issuer=self.origin,
                # PyJWT would read the wall clock; times are checked below on the relay's Clock.
                options={
                    "require": ["exp", "iat", "sub", "aud", "iss"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError) as exc:
            raise Unauthenticated("access token is for another relay") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid access token ({type(exc).__name__})") from exc
        exp, iat = int(claims["exp"]), int(claims["iat"])
        now_s = now_ms / 1000
        if not iat - 5 <= now_s < exp or exp - iat > MAX_TOKEN_TTL_S:
            raise Unauthenticated("access token expired or not yet valid; log in again")
        sub, uid = claims.get("sub"), claims.get("uid")
        if not isinstance(sub, str) or not isinstance(uid, str):
            raise Unauthenticated("access token names no device")
        return Principal(user_id=uid, device_id=sub), iat, exp
