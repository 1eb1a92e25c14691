"""``RelayLink``: the narrow interface the engine needs from a relay, in protocol bytes.

The HTTP client (:mod:`peer.remote.http`) is the production implementation; a simulation passes
one that calls the relay service in memory. Records travel as their canonical bytes (chain
entries, envelopes, sealed blocks), so an implementation needs nothing of the peer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

# The relay's wire code for a chain entry whose cutoffs are below a counter its log already holds
# for a device whose writing the entry ends (it wrote after the cutoffs were read): nothing
# changed, the entry is to be made again from the relay's current vector.
STALE_CUTOFFS = "stale_cutoffs"

_FAIL_FAST: ContextVar[bool] = ContextVar("drift_relay_fail_fast", default=False)


@contextmanager
def relay_fail_fast() -> Iterator[None]:
    """Within (and in tasks started within): a request that cannot open a connection to the
    relay, or gets no answer in time, raises ``RelayUnreachable`` at once instead of trying
    again with backoff; so does a login.

    For callers with other work to go on with meanwhile (a sync pass with LAN peers), which
    retry the relay on their own schedule: six tries of a connection that is not there cost up
    to a minute or more, and the caller learns nothing from the last five. A relay that answers,
    even with an error (5xx, 429), is there, and a connection dropped under a request may be a
    kept-alive one it closed: those are still retried as usual. A context variable, not a
    setting of the link, because the link is shared by the device's shares and its
    notification task, which keep their retries.
    """
    token = _FAIL_FAST.set(True)
    try:
        yield
    finally:
        _FAIL_FAST.reset(token)


def failing_fast() -> bool:
    """Whether the caller is inside :func:`relay_fail_fast`."""
    return _FAIL_FAST.get()


@dataclass(frozen=True, slots=True)
class RemoteShare:
    share_id: str
    role: str
    last_seq: int


@dataclass(frozen=True, slots=True)
class AppendAck:
    """The relay's sequence number per envelope (original ones for resends) and its head."""

    seqs: tuple[int, ...]
    appended: int
    last_seq: int
    # The relay's append time of the new entries (all the same); None from a relay too old to
    # say, or when every envelope was a resend.
    appended_ms: int | None = None


@dataclass(frozen=True, slots=True)
class MemberDevice:
    """A member device as the relay lists it: its certificate (bytes, to be verified) and the
    newest epoch a wrap in the relay's mailbox holds for it (None: none)."""

    certificate: bytes
    wrapped_epoch: int | None


@dataclass(frozen=True, slots=True)
class AddressedWrap:
    """A key wrap addressed to this device and the certificate of the device that made it."""

    wrap: bytes
    sender: bytes


@dataclass(frozen=True, slots=True)
class LogPage:
    # (seq, envelope bytes, the relay's append time in ms or None from a relay too old to say),
    # ascending seq
    entries: tuple[tuple[int, bytes, int | None], ...]
    last_seq: int
    more: bool
    # The share's membership chain height as of the page; None from a relay too old to say (the
    # device then fetches the chain on every pass).
    chain_height: int | None = None


class RelayLink(Protocol):
    """A logged-in device's view of one relay. Errors: ``RelayRefused``, ``RelayUnreachable``."""

    async def create_share(self, genesis: bytes) -> str: ...

    async def list_shares(self) -> list[RemoteShare]: ...

    async def chain(self, share: str, from_height: int = 0) -> list[bytes]: ...

    async def extend_chain(self, share: str, entry: bytes) -> int: ...

    async def member_devices(self, share: str) -> list[MemberDevice]:
        """The share's member devices (owners only)."""
        ...

    async def put_key_wraps(self, share: str, wraps: Sequence[bytes]) -> int:
        """Leave wraps (EpochKeyWrap bytes) for member devices (owners only), all or nothing."""
        ...

    async def key_wraps(self, share: str) -> list[AddressedWrap]:
        """The newest wraps addressed to this device, newest epoch first."""
        ...

    async def append(
        self, share: str, envelopes: Sequence[tuple[bytes, bytes | None]]
    ) -> AppendAck:
        """Append (envelope, certificate or None) pairs, all or nothing; resends are idempotent."""
        ...

    async def read_log(self, share: str, since: int, limit: int = 1000) -> LogPage: ...

    async def read_missing(
        self, share: str, vector: Mapping[str, int], limit: int = 1000
    ) -> LogPage: ...

    async def server_vector(self, share: str) -> dict[str, int]: ...

    async def have_blocks(self, share: str, block_ids: Sequence[bytes]) -> set[bytes]: ...

    async def put_blocks(self, share: str, blocks: Sequence[tuple[bytes, bytes]]) -> int: ...

    async def get_blocks(self, share: str, block_ids: Sequence[bytes]) -> dict[bytes, bytes]: ...

    async def get_block(self, share: str, block_id: bytes) -> bytes:
        """One block as raw bytes (large blocks: no batching overhead)."""
        ...

    async def revoke_device(self, statement: bytes) -> bool: ...

    async def put_recovery(self, blob: bytes, verify_key: bytes | None = None) -> None:
        """Keep the sealed recovery blob, and the key proving its code (see ``drift recover``)."""
        ...

    async def get_recovery(self) -> bytes: ...

    def pushed_page(self, share: str, since: int) -> LogPage | None:
        """The log after ``since`` as the live socket pushed it, when it did; else None."""
        ...

    def known_head(self, share: str) -> tuple[int, int] | None:
        """(latest seq, chain height) of the share as the live notification channel last said;
        None when there is none (no daemon waiting on heads, the socket down, a relay too old)."""
        ...

    async def wait_heads(self, cursors: Mapping[str, int], timeout_s: float) -> dict[str, int]:
        """Heads newer than ``cursors`` as soon as there are any, or ``{}`` after the timeout."""
        ...

    async def close(self) -> None: ...
