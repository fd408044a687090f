"""PEM encoding and decoding of keys and certificates, with errors that say what was wrong."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from manager.ca.errors import CertificateError


def is_p256(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bool:
    return key.curve.name == ec.SECP256R1.name


def load_private_key(pem: bytes, what: str) -> ec.EllipticCurvePrivateKey:
    """An unencrypted PEM ECDSA P-256 private key; `what` names it in errors."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"{what} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not is_p256(key):
        raise CertificateError(f"{what} is not an ECDSA P-256 key")
    return key


def load_certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (at least one); `what` names it in errors."""
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CertificateError(f"{what} is not a PEM certificate: {exc}") from exc


def load_certificate(pem: bytes, what: str) -> x509.Certificate:
    """The one certificate of `pem`; a bundle of several is refused."""
    certificates = load_certificates(pem, what)
    if len(certificates) != 1:
        raise CertificateError(f"{what} holds {len(certificates)} certificates, expected 1")
    return certificates[0]


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)
