"""One error hierarchy for the device: what went wrong, in words a user understands, and what to do.

``DriftError`` is the base. Every error carries ``hint`` (the next step for the user) and the
``exit_code`` the CLI returns for it. Errors caused by the relay's answer keep the relay's wire
``code`` and ``details``; link trouble (timeouts, refused connections, 5xx) is ``RelayUnreachable``
and is worth a retry; everything the relay refused on purpose is ``RelayRefused``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Exit codes of ``drift`` (documented in ``drift --help``)."""

    OK = 0
    FATAL = 1  # an unexpected error
    USAGE = 2  # the command line is wrong
    FILE_ERRORS = 3  # done, but some files could not be synced (see `drift status`)
    RELAY = 4  # the relay could not be reached or refused the request
    CONFLICTS = 5  # `drift conflicts`: there are conflicted copies to look at
    NOT_INITIALIZED = 10  # run `drift init` first
    NOT_FOUND = 11  # no such share, file or version
    INTERRUPTED = 130  # Ctrl-C


class DriftError(Exception):
    exit_code: ExitCode = ExitCode.FATAL

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(DriftError):
    exit_code = ExitCode.USAGE


class NotInitialized(DriftError):
    exit_code = ExitCode.NOT_INITIALIZED

    def __init__(self, home: str) -> None:
        super().__init__(
            f"this device has no driftsync identity in {home}",
            hint="run `drift init` first (or pass --home DIR / set DRIFT_HOME)",
        )


class ConfigError(DriftError):
    """The configuration or the on-disk state cannot be read or is inconsistent."""


class NotFound(DriftError):
    exit_code = ExitCode.NOT_FOUND


class RelayError(DriftError):
    exit_code = ExitCode.RELAY


class RelayUnreachable(RelayError):
    """The link failed (refused, reset, timed out, 5xx): retrying later may succeed."""


class RelayRefused(RelayError):
    """The relay answered with a typed refusal (its wire ``code`` and ``details`` kept)."""

    def __init__(
        self, code: str, message: str, status: int, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"the relay refused: {message} ({code})", hint=_relay_hint(code))
        self.code = code
        self.status = status
        self.details = dict(details or {})


def _relay_hint(code: str) -> str:
    return {
        "unauthenticated": "run `drift relay login URL` again",
        "device_revoked": "this device was revoked; run `drift init` to start over",
        "not_member": "ask the share's owner for an invite (`drift share invite`)",
        "role": "your role in this share does not allow it; ask an owner to make you an editor",
        "quota_exceeded": "the share owner's storage quota is full; free space or raise the quota",
        "rate_limited": "wait a minute and try again",
        "registration_closed": "this relay needs an invite code: drift relay login URL --invite",
        "fork": "another copy of this device wrote to the share; see `drift status`",
        "stale_cutoffs": "the removed member's device kept writing meanwhile; run it again",
        "expired": "show a new code with `drift device link` on a device of yours",
        "link_refused": "run `drift device link` again for a new code and type it carefully",
    }.get(code, "")


class ShareError(DriftError):
    """A share's state stops it from syncing (fork, missing keys, bad chain)."""


class IntegrityError(DriftError):
    """Something from the relay or another device failed verification and was not applied."""
