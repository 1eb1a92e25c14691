"""One error hierarchy for everything that crosses the wire.

Every error carries a short machine ``code`` (sent on the wire, e.g. ``"gap"``) and a sentence a
person understands. ``LocalProtocolError`` means *we* were asked to produce something invalid;
``RemoteProtocolError`` means bytes or statements that came from elsewhere are invalid. A relay
answers a remote error with the hinted HTTP status. ``error_from_wire`` maps a code back to its
class, so an error received from a relay or peer is raised as the type refused on the other side.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ProtocolError(Exception):
    """Base of every error raised by ``protocol``."""

    code: ClassVar[str] = "protocol_error"
    status_hint: ClassVar[int] = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class LocalProtocolError(ProtocolError):
    """We were asked to build or send something the protocol does not allow."""

    code = "local_error"


class RemoteProtocolError(ProtocolError):
    """Something received (bytes, a signature, a statement) is not acceptable."""

    code = "remote_error"


class EncodeError(LocalProtocolError):
    """A value cannot be encoded: wrong type, out of range, or over a size limit."""

    code = "encode_error"


class DecodeError(RemoteProtocolError):
    """Bytes that do not decode to a valid message; ``reason`` says which rule they broke.

    Reasons: ``truncated``, ``trailing_bytes``, ``too_large``, ``too_deep``, ``wrong_type``,
    ``missing_field``, ``unknown_field``, ``unknown_type``, ``out_of_range``, ``not_canonical``,
    ``bad_checksum``, ``malformed``.
    """

    code = "malformed"

    def __init__(self, reason: str, message: str, **details: Any) -> None:
        super().__init__(message, reason=reason, **details)
        self.reason = reason


class UnsupportedVersion(RemoteProtocolError):
    code = "unsupported_version"


class BadSignature(RemoteProtocolError):
    code = "bad_signature"
    status_hint = 401


class Forbidden(RemoteProtocolError):
    """The signer's user has no right to do this by the membership chain."""

    code = "forbidden"
    status_hint = 403


class Revoked(RemoteProtocolError):
    code = "revoked"
    status_hint = 403


class PastCutoff(RemoteProtocolError):
    """An envelope numbered after the device's removal cutoff, claiming an older chain height."""

    code = "past_cutoff"
    status_hint = 403


class WrongShare(RemoteProtocolError):
    code = "wrong_share"


class WrongEpoch(RemoteProtocolError):
    code = "wrong_epoch"


class UnknownHeight(RemoteProtocolError):
    """An envelope names a chain height the verifier has not seen yet (fetch the chain first)."""

    code = "unknown_height"
    status_hint = 409


class CounterGap(RemoteProtocolError):
    code = "gap"
    status_hint = 409


class CounterReplay(RemoteProtocolError):
    code = "replay"
    status_hint = 409


class Fork(RemoteProtocolError):
    """Two different statements claim the same position (device counter or chain height)."""

    code = "fork"
    status_hint = 409


class BrokenHashChain(RemoteProtocolError):
    code = "broken_link"
    status_hint = 409


class InvalidChain(RemoteProtocolError):
    """A membership chain entry that does not follow the chain's rules."""

    code = "invalid_chain"


class BadKey(RemoteProtocolError):
    """A key that does not match the hash recorded in the membership chain, or fails to open."""

    code = "bad_key"


class BadCertificate(RemoteProtocolError):
    code = "bad_certificate"
    status_hint = 401


class AuthFailed(RemoteProtocolError):
    """An auth message for another relay, another challenge, or outside the time window."""

    code = "auth_failed"
    status_hint = 401


class BadCode(RemoteProtocolError):
    """A printable id or code with a typo (checksum mismatch) or the wrong shape."""

    code = "bad_code"


class KeyFileError(LocalProtocolError):
    """A key file that cannot be read, has unsafe permissions or is corrupt."""

    code = "key_file"


class ServerError(RemoteProtocolError):
    """The other side reported a failure of its own, not a fault in what we sent."""

    code = "server_error"
    status_hint = 500


_BY_CODE: dict[str, type[ProtocolError]] = {
    cls.code: cls
    for cls in (
        ProtocolError,
        LocalProtocolError,
        RemoteProtocolError,
        EncodeError,
        UnsupportedVersion,
        BadSignature,
        Forbidden,
        Revoked,
        PastCutoff,
        WrongShare,
        WrongEpoch,
        UnknownHeight,
        CounterGap,
        CounterReplay,
        Fork,
        BrokenHashChain,
        InvalidChain,
        BadKey,
        BadCertificate,
        AuthFailed,
        BadCode,
        KeyFileError,
        ServerError,
    )
}


def error_from_wire(
    code: str, message: str, details: dict[str, Any] | None = None
) -> ProtocolError:
    """The error a peer reported, as the class with that code (else ``RemoteProtocolError``)."""
    details = dict(details or {})
    if code == DecodeError.code:
        reason = details.pop("reason", "malformed")
        return DecodeError(str(reason), message, **details)
    cls = _BY_CODE.get(code)
    if cls is None:
        # A code from a newer peer: keep it, so logs and callers still see what was said.
        return RemoteProtocolError(message, wire_code=code, **details)
    return cls(message, **details)
