"""docs/protocol.md lists every message, record and error code exactly as the code has them."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol import auth, chain, envelope, errors, invite, keys, keyschedule, linking, recovery
from protocol.codec import Record, schema_table
from protocol.messages import SequencedEnvelope, message_types

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()

RECORDS: list[type[Record]] = [
    keys.DeviceCertificate,
    keys.DeviceRevocation,
    chain.ChainEntry,
    envelope.EnvelopeHeader,
    envelope.Envelope,
    auth.AuthChallenge,
    auth.AuthResponse,
    keyschedule.EpochKeyWrap,
    keyschedule.KeyBundle,
    linking.LinkRequest,
    linking.LinkGrant,
    recovery.RecoveryBlob,
    recovery.RecoveryProof,
    invite.Invite,
    SequencedEnvelope,
]


@pytest.mark.parametrize("name", sorted(message_types()))
def test_every_message_is_documented_field_by_field(name: str) -> None:
    assert f"#### `{name}`" in DOC
    assert schema_table(message_types()[name], name) in DOC, f"docs of {name} are out of date"


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.__name__)
def test_every_record_is_documented_field_by_field(record: type[Record]) -> None:
    assert schema_table(record) in DOC, f"docs of {record.__name__} are out of date"


def test_every_error_code_is_documented() -> None:
    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ProtocolError)
    }
    codes -= {"protocol_error", "local_error", "remote_error"}
    missing = sorted(code for code in codes if f"| `{code}` |" not in DOC)
    assert not missing

