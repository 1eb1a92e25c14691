"""Checking envelopes as any replica would, before the log takes them.

The relay cannot decrypt a payload; it checks everything else: size and shape, that each
envelope is for the share it is sent to, its signature (by the signer's certificate, forwarded
with it or as the device logged in), the signer's authority by the membership chain at the height
the envelope names (role, epoch, removal cutoffs), revocation, causal dependencies (everything in
its seen-vector is already in the log or earlier in the batch) and the first envelope's empty
link. Counter and hash-chain continuity are the log's (:mod:`relay.log`), under the share lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from protocol.chain import MembershipChain
from protocol.codec import Record
from protocol.envelope import Envelope, check_envelope_authority, verify_envelope_signature
from protocol.errors import ProtocolError
from protocol.keys import DeviceCertificate
from relay import log
from relay.errors import (
    BadRequest,
    BrokenHashChain,
    DeviceRevoked,
    MissingDependencies,
    PayloadTooLarge,
    from_protocol,
)
from relay.settings import Settings

ZERO_HASH = bytes(32)

R = TypeVar("R", bound=Record)


@dataclass(frozen=True, slots=True)
class ForwardedEnvelope:
    """One envelope of an append batch, with its signer's certificate when the relay may lack it."""

    envelope: bytes
    certificate: bytes | None = None


def decode(cls: type[R], data: bytes) -> R:
    """A protocol record from bytes, or the relay's answer to why not."""
    try:
        return cls.decode(data)
    except ProtocolError as exc:
        raise from_protocol(exc) from exc


def decode_batch(
    settings: Settings, share_id: str, items: Sequence[ForwardedEnvelope]
) -> list[Envelope]:
    """Limits, decoding and the share of every envelope in a batch."""
    if not items:
        raise BadRequest("no envelopes to append")
    if len(items) > settings.max_batch_envelopes:
        raise PayloadTooLarge(f"at most {settings.max_batch_envelopes} envelopes per request")
    for item in items:
        if len(item.envelope) > settings.max_envelope_bytes:
            raise PayloadTooLarge(f"an envelope is at most {settings.max_envelope_bytes} bytes")
    decoded = [decode(Envelope, item.envelope) for item in items]
    for env in decoded:
        if env.header.share.hex() != share_id:
            raise BadRequest("an envelope in the batch is for another share")
    return decoded


def verify_signatures(envelopes: list[Envelope], certs: list[DeviceCertificate]) -> None:
    try:
        for env, cert in zip(envelopes, certs, strict=True):
            verify_envelope_signature(env, cert.device_key)
    except ProtocolError as exc:
        raise from_protocol(exc) from exc


def admit(
    items: Sequence[ForwardedEnvelope],
    decoded: list[Envelope],
    certificates: list[DeviceCertificate],
    chain: MembershipChain,
    tips: Mapping[str, tuple[int, bytes]],
    revoked: set[str],
) -> list[log.NewEnvelope]:
    """The log entries for a batch whose every envelope the chain and the log's state admit.

    Runs inside the append's transaction, with ``chain`` caught up to the share's height and
    ``tips`` the devices' last envelopes; refuses the whole batch at the first bad envelope,
    naming its ``index``.
    """
    batch: list[log.NewEnvelope] = []
    have = {device: counter for device, (counter, _) in tips.items()}
    for index, env in enumerate(decoded):
        header = env.header
        device = header.device.hex()
        if device in revoked:
            raise DeviceRevoked(
                "an envelope in the batch is signed by a revoked device", index=index
            )
        try:
            check_envelope_authority(env, certificates[index], chain)
        except ProtocolError as exc:
            raise from_protocol(exc, index=index) from exc
        missing = {d.hex(): c for d, c in header.seen.items() if have.get(d.hex(), 0) < c}
        if missing:
            raise MissingDependencies(
                "an envelope has seen envelopes this relay does not hold; send them first",
                index=index,
                missing=missing,
            )
        if header.counter == 1 and header.prev != ZERO_HASH:
            raise BrokenHashChain("a device's first envelope names a previous one", index=index)
        batch.append(
            log.NewEnvelope(
                device_id=device,
                counter=header.counter,
                envelope_hash=env.envelope_hash,
                prev_hash=None if header.counter == 1 else header.prev,
                body=items[index].envelope,
                block_ids=tuple(header.blocks),
            )
        )
        have[device] = max(have.get(device, 0), header.counter)
    return batch
