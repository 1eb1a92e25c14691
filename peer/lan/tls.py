"""TLS 1.3 on certificates whose key is the device's own Ed25519 key.

Python's ``ssl`` has no certificate-verify callback, and OpenSSL only asks a client for its
certificate when it verifies what it receives. So every device certificate is issued by one
*public* LAN root whose private key anyone can derive (it is a constant of the protocol): the root
gives no trust at all, it only lets OpenSSL request, accept and check a certificate of any device.
What TLS still proves is the part that matters: each side signs the handshake with the private key
of the certificate it shows (TLS 1.3 CertificateVerify). Who that key belongs to, and whether it may
talk to us, is decided above TLS: the first message must name the same key, and the authorization
hook judges the device certificate it carries (see ``peer.lan.transport``).

A device's TLS certificate is a pure function of its key (fixed serial, validity and names, and
Ed25519 signatures are deterministic), so it never needs storing.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from peer.lan.errors import IdentityMismatch

ALPN = "driftsync-lan/1"
SEED_BYTES = 32
# Published on purpose: see the module docstring. Changing it splits the LAN protocol.
_ROOT_SEED = hashlib.sha256(b"driftsync/v1/lan-tls-root: public by design, trusts nothing").digest()
_ROOT_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftsync LAN root (public)")])
_DEVICE_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftsync device")])
# Fixed, wide validity: device clocks may be far off, and expiry means nothing for pinned keys.
_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)


def _serial(public_key: bytes) -> int:
    # Positive and at most 20 bytes, as RFC 5280 asks.
    return int.from_bytes(hashlib.sha256(public_key).digest()[:16], "big") | 1


def _raw_public(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@functools.cache
def root_certificate_pem() -> bytes:
    """The public LAN root, identical on every device."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(_ROOT_SEED)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_ROOT_NAME)
        .issuer_name(_ROOT_NAME)
        .public_key(key.public_key())
        .serial_number(_serial(_raw_public(key.public_key())))
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, None)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclasses.dataclass(frozen=True, repr=False)
class TlsIdentity:
    """A device's TLS key (its Ed25519 device key) and the certificate derived from it."""

    private_key: ed25519.Ed25519PrivateKey
    certificate_der: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> TlsIdentity:
        """From the device key's 32-byte Ed25519 seed (PyNaCl's ``SigningKey.encode()``)."""
        if len(seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed has {SEED_BYTES} bytes, not {len(seed)}")
        key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        return cls(private_key=key, certificate_der=device_certificate_der(key))

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key: the device key."""
        return _raw_public(self.private_key.public_key())

    def __repr__(self) -> str:
        return f"TlsIdentity(public_key={self.public_key.hex()})"


def device_certificate_der(key: ed25519.Ed25519PrivateKey) -> bytes:
    """The device's TLS certificate: its own public key, issued by the public LAN root."""
    root_key = ed25519.Ed25519PrivateKey.from_private_bytes(_ROOT_SEED)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_DEVICE_NAME)
        .issuer_name(_ROOT_NAME)
        .public_key(public)
        .serial_number(_serial(_raw_public(public)))
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(root_key, None)
    )
    return cert.public_bytes(serialization.Encoding.DER)


def certificate_public_key(certificate_der: bytes) -> bytes:
    """The raw Ed25519 key of a TLS certificate the other side presented."""
    try:
        public = x509.load_der_x509_certificate(certificate_der).public_key()
    except ValueError as exc:
        raise IdentityMismatch(f"unreadable TLS certificate: {exc}") from exc
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise IdentityMismatch("TLS certificate key is not an Ed25519 device key")
    return _raw_public(public)


def _context(purpose: ssl.Purpose, identity: TlsIdentity) -> ssl.SSLContext:
    server = purpose is ssl.Purpose.CLIENT_AUTH
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False  # peers are found by address; identity is pinned by key
    context.verify_mode = ssl.CERT_REQUIRED  # makes the server ask for the client's certificate
    context.load_verify_locations(cadata=root_certificate_pem().decode("ascii"))
    context.set_alpn_protocols([ALPN])
    if server:
        # A resumed TLS 1.3 session carries no certificate; every connection shows its key anew.
        context.num_tickets = 0
    _load_identity(context, identity)
    return context


def _load_identity(context: ssl.SSLContext, identity: TlsIdentity) -> None:
    # ssl loads keys only from files: a private directory, the key encrypted under a one-time
    # password that never leaves memory, removed as soon as OpenSSL has read it.
    password = os.urandom(32).hex()
    key_pem = identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode("ascii")),
    )
    cert_pem = x509.load_der_x509_certificate(identity.certificate_der).public_bytes(
        serialization.Encoding.PEM
    )
    with tempfile.TemporaryDirectory(prefix="driftsync-tls-") as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_path.write_bytes(cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_pem)
        context.load_cert_chain(cert_path, key_path, password=password)


def server_context(identity: TlsIdentity) -> ssl.SSLContext:
    """For accepting LAN connections: TLS 1.3 only, client certificate required."""
    return _context(ssl.Purpose.CLIENT_AUTH, identity)


def client_context(identity: TlsIdentity) -> ssl.SSLContext:
    """For opening LAN connections: TLS 1.3 only, presents the device certificate."""
    return _context(ssl.Purpose.SERVER_AUTH, identity)
