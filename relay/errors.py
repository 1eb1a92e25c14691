"""The relay's one error hierarchy: each error has an HTTP status and a wire code.

The service raises these; the HTTP adapter turns them into ``{"error": code, "message": ...,
**details}`` with the status, and a client turns such a body back into the same type with
:func:`error_from_wire`. Both directions use :data:`ERRORS_BY_CODE`, built from the classes below,
so a code can never mean two things.
"""

from __future__ import annotations

from typing import Any, ClassVar

from protocol.errors import ProtocolError


class RelayError(Exception):
    """Base of every error the relay answers with; ``details`` travel on the wire with the code."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_wire(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.details}


class BadRequest(RelayError):
    """The request is malformed: wrong type, missing field, undecodable body."""

    status = 400
    code = "bad_request"


class InvalidSignature(RelayError):
    """A signature (envelope, chain entry, certificate) does not verify."""

    status = 400
    code = "bad_signature"


class Unauthenticated(RelayError):
    """No valid token: missing, malformed, expired, foreign audience, or signed by no known key."""

    status = 401
    code = "unauthenticated"


class AuthFailed(RelayError):
    """The signed auth message was refused (bad signature, unknown or reused nonce, stale time)."""

    status = 401
    code = "auth_failed"


class Forbidden(RelayError):
    """Authenticated, but this principal may not do this."""

    status = 403
    code = "forbidden"


class NotMember(Forbidden):
    code = "not_member"


class RoleTooLow(Forbidden):
    """A member whose role does not allow this (a viewer publishing, an editor editing a chain)."""

    code = "role"


class DeviceRevoked(Forbidden):
    code = "device_revoked"


class RegistrationClosed(Forbidden):
    code = "registration_closed"


class LinkRefused(Forbidden):
    """The device showing a link code refused the request made at its rendezvous."""

    code = "link_refused"


class NotFound(RelayError):
    status = 404
    code = "not_found"


class Expired(RelayError):
    """Something that lived a short while (a link rendezvous) is over."""

    status = 410
    code = "expired"


class Conflict(RelayError):
    status = 409
    code = "conflict"


class AlreadyExists(Conflict):
    code = "exists"


class Fork(Conflict):
    """A different envelope for a device counter the log already holds; details carry the stored."""

    code = "fork"


class CounterGap(Conflict):
    """An envelope whose counter does not follow the device's last one; ``have`` is that counter."""

    code = "gap"


class BrokenHashChain(Conflict):
    """An envelope whose previous-hash does not name the device's previous envelope."""

    code = "broken_link"


class MissingDependencies(Conflict):
    """An envelope that has seen envelopes the relay does not hold yet (send those first)."""

    code = "missing_dependencies"


class StaleChainHead(Conflict):
    """A chain entry that does not extend the current head; ``head`` and ``height`` are given."""

    code = "chain_head"


class StaleCutoffs(Conflict):
    """A chain entry that ends a device's writing (removal, demotion, revocation) with a cutoff
    below a counter of that device the log already holds: the envelope landed after the owner
    read the relay's vector. Accepting the entry would make every replica refuse an envelope the
    relay keeps serving; ``device``, ``have`` (the relay's counter) and ``cutoff`` are given."""

    code = "stale_cutoffs"


class PayloadTooLarge(RelayError):
    status = 413
    code = "too_large"


class BlockMismatch(RelayError):
    """A block body whose SHA-256 is not the block id it was uploaded under; nothing was stored."""

    status = 422
    code = "block_mismatch"


class RateLimited(RelayError):
    status = 429
    code = "rate_limited"


class QuotaExceeded(RelayError):
    status = 507
    code = "quota_exceeded"


class Unavailable(RelayError):
    status = 503
    code = "unavailable"


class Refused(RelayError):
    """A statement the protocol's rules refuse; code and status are those of the protocol error."""

    status = 400
    code = "refused"

    def __init__(self, message: str, *, wire_code: str, http_status: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.code = wire_code  # type: ignore[misc]
        self.status = http_status  # type: ignore[misc]


def from_protocol(exc: ProtocolError, **extra: Any) -> RelayError:
    """The relay's answer to a protocol error: the same wire code, the status it hints."""
    details = {**exc.details, **extra}
    cls = ERRORS_BY_CODE.get(exc.code)
    if cls is not None and cls is not Refused:
        return cls(exc.message, **details)
    status = exc.status_hint if 400 <= exc.status_hint < 500 else 400
    return Refused(exc.message, wire_code=exc.code, http_status=status, **details)


def _all_subclasses(cls: type[RelayError]) -> list[type[RelayError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


ERRORS_BY_CODE: dict[str, type[RelayError]] = {}
for _cls in _all_subclasses(RelayError):
    if _cls.code in ERRORS_BY_CODE:  # pragma: no cover - guarded at import time
        raise RuntimeError(f"wire code {_cls.code!r} used twice")
    ERRORS_BY_CODE[_cls.code] = _cls


def error_from_wire(status: int, body: object) -> RelayError:
    """The typed error for a relay's error answer; an unknown code keeps its status and message."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        fields = dict(body)
        code = fields.pop("error")
        message = str(fields.pop("message", code))
        cls = ERRORS_BY_CODE.get(code)
        if cls is not None:
            return cls(message, **fields)
        err = RelayError(message, **fields)
        err.status = status  # type: ignore[misc]  # an instance-level status for unknown codes
        return err
    err = RelayError(f"relay answered {status} without an error body")
    err.status = status  # type: ignore[misc]
    return err
