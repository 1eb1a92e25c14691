"""Who may talk to us on the LAN, and about which share: the membership chains decide.

A peer proves a device key with TLS and shows a device certificate (``peer.lan.hello``). It is
admitted for a share only if the certificate's signature holds, the share's membership chain, at
its head, gives the certificate's user a role (any role: viewers read too), the chain has not
revoked the device, and no known revocation by the same user names it. A connection may serve
several shares; admission is per share, and a chain that grows (``adopt``) can end it at once.

The authorizer is shared by every session of a device, so a chain adopted on one connection is
the chain every other connection is judged by; ``generation`` changes whenever the verdicts may
have changed, so sessions know when to look again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from protocol.chain import MembershipChain
from protocol.errors import ProtocolError, WrongShare
from protocol.keys import DeviceCertificate, DeviceRevocation


class Refusal(StrEnum):
    """Why a device is not admitted for a share (one word each, for logs and status)."""

    UNKNOWN_SHARE = "unknown_share"
    BAD_CERTIFICATE = "bad_certificate"
    NOT_MEMBER = "not_member"
    REMOVED = "removed"
    REVOKED = "revoked"


class LanAuthorizer:
    """This device's view of its shares' membership chains and of its users' revocations."""

    def __init__(
        self,
        chains: Mapping[bytes, MembershipChain] | None = None,
        revocations: Iterable[DeviceRevocation] = (),
    ) -> None:
        self._chains: dict[bytes, MembershipChain] = {}
        self._revoked: set[tuple[bytes, bytes]] = set()  # (user key, device id)
        self.generation = 0
        for share_id, chain in (chains or {}).items():
            self.adopt(share_id, chain)
        for revocation in revocations:
            self.add_revocation(revocation)

    # --- the local view ------------------------------------------------------------------------

    def shares(self) -> list[bytes]:
        return sorted(self._chains)

    def chain(self, share_id: bytes) -> MembershipChain | None:
        return self._chains.get(share_id)

    def adopt(self, share_id: bytes, chain: MembershipChain) -> None:
        """Judge by ``chain`` from now on; it must extend the current one (``peer.lan.chains``)."""
        if chain.share_id != share_id:
            raise WrongShare("this chain belongs to another share")
        current = self._chains.get(share_id)
        if current is not None and (
            chain.height < current.height or chain.hashes[current.height] != current.head_hash
        ):
            raise ValueError("an adopted chain must extend the current one")
        self._chains[share_id] = chain
        self.generation += 1

    def add_revocation(self, revocation: DeviceRevocation) -> None:
        """Refuse a device its own user revoked (``BadCertificate`` if the signature fails)."""
        revocation.verify()
        self._revoked.add((revocation.user_key, revocation.device_id))
        self.generation += 1

    # --- verdicts ------------------------------------------------------------------------------

    def refusal(self, share_id: bytes, certificate: DeviceCertificate) -> Refusal | None:
        """None if ``certificate``'s device is admitted for the share now, else why not."""
        chain = self._chains.get(share_id)
        if chain is None:
            return Refusal.UNKNOWN_SHARE
        try:
            certificate.verify()
        except ProtocolError:
            return Refusal.BAD_CERTIFICATE
        device_id = certificate.device_id
        if chain.is_revoked(device_id) or (certificate.user_key, device_id) in self._revoked:
            return Refusal.REVOKED
        if chain.role_at(certificate.user_id) is None:
            # The chain keeps the key of every user it ever admitted.
            was_member = chain.user_key(certificate.user_id) is not None
            return Refusal.REMOVED if was_member else Refusal.NOT_MEMBER
        return None

    def admits(self, share_id: bytes, certificate: DeviceCertificate) -> bool:
        return self.refusal(share_id, certificate) is None

    def admitted_shares(self, certificate: DeviceCertificate) -> list[bytes]:
        return [s for s in self.shares() if self.refusal(s, certificate) is None]

    def admits_any(self, certificate: DeviceCertificate) -> bool:
        """The transport's connection-level question: is there any share to talk about?"""
        return any(self.refusal(s, certificate) is None for s in self._chains)
