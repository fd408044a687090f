"""The cluster's root CA: an ECDSA P-256 key and a self-signed certificate valid 20 years.

Managers hold the key and sign node certificates with it; every node holds the certificate
and trusts exactly it. Its SHA-256 digest (of the DER certificate) is what join tokens pin.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from manager.ca.errors import CAError, CertificateError
from manager.ca.pem import (
    certificate_pem,
    is_p256,
    load_certificate,
    load_private_key,
    private_key_pem,
)
from manager.ca.tls import write_private_file
from shoal.v1 import types_pb2

ROOT_CN = "shoal-root-ca"
ROOT_LIFETIME = datetime.timedelta(days=20 * 365)
# Tolerates clocks of other nodes that run a little behind the manager's.
CLOCK_SKEW_ALLOWANCE = datetime.timedelta(hours=1)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class RootCA:
    """The root certificate, with its private key on managers (None elsewhere)."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey | None = None

    @classmethod
    def create(cls, now: datetime.datetime | None = None) -> RootCA:
        now = now or utcnow()
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ROOT_CN)])
        public = key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
            .not_valid_after(now + ROOT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes | None = None) -> RootCA:
        """Loads and checks a root: one self-signed CA certificate, P-256, matching its key."""
        certificate = load_certificate(cert_pem, "root CA certificate")
        public = certificate.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or not is_p256(public):
            raise CertificateError("root CA certificate does not hold an ECDSA P-256 key")
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.value.ca:
            raise CertificateError("root CA certificate is not a CA (basic constraints CA:FALSE)")
        try:
            certificate.verify_directly_issued_by(certificate)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise CertificateError(f"root CA certificate is not self-signed: {exc}") from exc
        key = None
        if key_pem is not None:
            key = load_private_key(key_pem, "root CA key")
            if key.public_key() != public:
                raise CertificateError("root CA key does not match the root CA certificate")
        return cls(certificate, key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path | None = None) -> RootCA:
        try:
            cert_pem = cert_path.read_bytes()
            key_pem = key_path.read_bytes() if key_path is not None else None
        except OSError as exc:
            raise CAError(f"cannot read the root CA: {exc}") from exc
        return cls.from_pem(cert_pem, key_pem)

    def save(self, cert_path: Path, key_path: Path | None = None) -> None:
        """Writes the certificate (and the key, when a path is given) with mode 0600."""
        write_private_file(cert_path, self.cert_pem)
        if key_path is not None:
            write_private_file(key_path, self.key_pem)

    @property
    def cert_pem(self) -> bytes:
        return certificate_pem(self.certificate)

    @property
    def key_pem(self) -> bytes:
        return private_key_pem(self.signing_key)

    @property
    def signing_key(self) -> ec.EllipticCurvePrivateKey:
        if self.private_key is None:
            raise CAError("this copy of the root CA has no private key: only managers sign")
        return self.private_key

    @property
    def digest(self) -> bytes:
        """SHA-256 of the DER certificate: what join tokens pin."""
        return hashlib.sha256(self.certificate.public_bytes(serialization.Encoding.DER)).digest()

    def to_proto(self, join_tokens: types_pb2.JoinTokens | None = None) -> types_pb2.RootCA:
        message = types_pb2.RootCA(
            ca_cert=self.cert_pem,
            ca_cert_hash=f"sha256:{self.digest.hex()}",
            ca_key=self.key_pem if self.private_key is not None else b"",
        )
        if join_tokens is not None:
            message.join_tokens.CopyFrom(join_tokens)
        return message

    @classmethod
    def from_proto(cls, message: types_pb2.RootCA) -> RootCA:
        root = cls.from_pem(message.ca_cert, message.ca_key or None)
        expected = f"sha256:{root.digest.hex()}"
        if message.ca_cert_hash and message.ca_cert_hash != expected:
            raise CertificateError(
                f"root CA ca_cert_hash {message.ca_cert_hash!r} does not match its certificate"
                f" ({expected})"
            )
        return root
