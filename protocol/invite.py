"""Invite codes: how an invitee learns where a share lives and checks it joins the right one.

An invite carries the relay URL, the share id, the hash of the share's genesis entry and the
inviting owner's device id. Written as ``drift-invite:`` followed by the canonical msgpack of the
``Invite`` record in checked base32 (a check character after every 16), so a damaged paste is
detected. After fetching the chain from the relay the invitee runs ``check_invite``: the chain
must start at that genesis and the inviting device must be an owner's device in it.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import ClassVar

from protocol import ids
from protocol.chain import SHARE_ID_BYTES, MembershipChain, Role
from protocol.codec import Bin, Record, Text, UInt
from protocol.errors import BadCode, DecodeError, Forbidden, UnsupportedVersion, WrongShare
from protocol.signing import HASH_BYTES

INVITE_VERSION = 1
INVITE_PREFIX = "drift-invite:"
_CHUNK = 16
MAX_URL_BYTES = 512


@dataclasses.dataclass(frozen=True)
class Invite(Record):
    v: int
    relay_url: str
    share: bytes
    genesis: bytes
    owner_device: bytes

    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("relay_url", Text(MAX_URL_BYTES, min_len=1)),
        ("share", Bin.exact(SHARE_ID_BYTES)),
        ("genesis", Bin.exact(HASH_BYTES)),
        ("owner_device", Bin.exact(HASH_BYTES)),
    )
    MAX_BYTES: ClassVar[int] = 1024

    def to_text(self) -> str:
        chars = base64.b32encode(self.encode()).decode("ascii").rstrip("=")
        return INVITE_PREFIX + ids.add_checks(chars, _CHUNK)

    @classmethod
    def from_text(cls, text: str) -> Invite:
        text = text.strip()
        if not text.lower().startswith(INVITE_PREFIX):
            raise BadCode(f"an invite starts with {INVITE_PREFIX!r}")
        chars = ids.normalize(text[len(INVITE_PREFIX) :])
        body = ids.strip_checks(chars, _CHUNK, "invite")
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
            invite = cls.decode(raw)
        except (ValueError, DecodeError) as exc:
            raise BadCode("this invite is damaged; ask for it again") from exc
        if invite.v != INVITE_VERSION:
            raise UnsupportedVersion(f"invite version {invite.v} is not supported; update drift")
        return invite


def make_invite(chain: MembershipChain, relay_url: str, owner_device: bytes) -> Invite:
    return Invite(INVITE_VERSION, relay_url, chain.share_id, chain.genesis_hash, owner_device)


def check_invite(invite: Invite, chain: MembershipChain) -> None:
    """Is ``chain`` (verified, from the relay) the share the invite names?"""
    if chain.share_id != invite.share or chain.genesis_hash != invite.genesis:
        raise WrongShare("the relay served another share than the one you were invited to")
    for entry in chain.entries:
        if entry.signer.device_id == invite.owner_device:
            if chain.role_at(entry.signer.user_id) is Role.OWNER:
                return
            break
    raise Forbidden("the invite's device is not an owner's device in this share")
