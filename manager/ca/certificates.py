"""Node certificates: keys and signing requests (node side), issuing (manager side), reading
and verifying them, and when to renew them.

A node certificate names the node (CN = node id), its role (OU = swarm-manager|swarm-worker)
and its cluster (O = cluster id); its DNS names are the node id and the role, so a client can
require "any manager" as the server name. The CA takes nothing but the public key from a
signing request: the names come from the join token or the node's registration.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from manager.ca import base36
from manager.ca.errors import CAConfigError, CertificateError
from manager.ca.pem import is_p256, load_certificates
from manager.ca.roles import Role
from manager.ca.root_ca import CLOCK_SKEW_ALLOWANCE, RootCA, utcnow
from shoal.v1 import specs_pb2

DEFAULT_NODE_CERT_LIFETIME = datetime.timedelta(days=90)
MIN_NODE_CERT_LIFETIME = datetime.timedelta(hours=1)
# Renew at a random point in this part of the lifetime, so that nodes do not renew at once.
RENEWAL_WINDOW = (0.5, 0.8)
MAX_CSR_BYTES = 16 * 1024
_ID_CHARS = frozenset(base36.ALPHABET)


@dataclass(frozen=True)
class NodeIdentity:
    """Who a node certificate names: the caller of an authenticated RPC."""

    node_id: str
    role: Role
    cluster_id: str


def generate_node_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def create_csr(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A PEM signing request for `key`; it carries no names (the CA assigns them)."""
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def node_cert_lifetime(spec: specs_pb2.ClusterSpec | None) -> datetime.timedelta:
    """ClusterSpec ca_config.node_cert_expiry, or 90 days when unset; at least an hour."""
    if spec is None or not spec.ca_config.HasField("node_cert_expiry"):
        return DEFAULT_NODE_CERT_LIFETIME
    lifetime = spec.ca_config.node_cert_expiry.ToTimedelta()
    if lifetime < MIN_NODE_CERT_LIFETIME:
        raise CAConfigError(
            f"ca_config.node_cert_expiry {lifetime} is shorter than the minimum"
            f" {MIN_NODE_CERT_LIFETIME}"
        )
    return lifetime


def _check_id(value: str, what: str) -> None:
    # Node ids are also DNS names in the certificate, hence at most 63 characters.
    if not value or not set(value) <= _ID_CHARS or len(value) > 63:
        raise CertificateError(f"{what} {value!r} must be 1-63 characters of 0-9 and a-z")


def _load_csr(csr_pem: bytes) -> ec.EllipticCurvePublicKey:
    if not csr_pem:
        raise CertificateError("certificate signing request is empty")
    if len(csr_pem) > MAX_CSR_BYTES:
        raise CertificateError(
            f"certificate signing request is {len(csr_pem)} bytes, more than {MAX_CSR_BYTES}"
        )
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CertificateError(f"certificate signing request is not valid PEM: {exc}") from exc
    if not csr.is_signature_valid:
        raise CertificateError("certificate signing request is not signed by its own key")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not is_p256(public):
        raise CertificateError("certificate signing request must be for an ECDSA P-256 key")
    return public


def issue_node_certificate(
    root: RootCA,
    csr_pem: bytes,
    node: NodeIdentity,
    lifetime: datetime.timedelta = DEFAULT_NODE_CERT_LIFETIME,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """Signs the CSR's key into a certificate for `node`, valid `lifetime` from `now`.

    Backdated by the clock-skew allowance; never valid beyond the root.
    """
    _check_id(node.node_id, "node id")
    _check_id(node.cluster_id, "cluster id")
    public = _load_csr(csr_pem)
    now = now or utcnow()
    not_after = min(now + lifetime, root.certificate.not_valid_after_utc)
    issuer_ski = root.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, node.cluster_id),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, node.role.ou),
                    x509.NameAttribute(NameOID.COMMON_NAME, node.node_id),
                ]
            )
        )
        .issuer_name(root.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(node.node_id), x509.DNSName(node.role.ou)]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value),
            critical=False,
        )
        .sign(root.signing_key, hashes.SHA256())
    )


def _single_attribute(certificate: x509.Certificate, oid: x509.ObjectIdentifier, what: str) -> str:
    values = certificate.subject.get_attributes_for_oid(oid)
    if len(values) != 1:
        raise CertificateError(f"node certificate must have exactly one {what}, has {len(values)}")
    value = values[0].value
    if not isinstance(value, str) or not value:
        raise CertificateError(f"node certificate {what} is empty")
    return value


def read_node_identity(certificate: x509.Certificate) -> NodeIdentity:
    """The node id (CN), role (OU) and cluster id (O) a node certificate names."""
    return NodeIdentity(
        node_id=_single_attribute(certificate, NameOID.COMMON_NAME, "CN (node id)"),
        role=Role.from_ou(
            _single_attribute(certificate, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)")
        ),
        cluster_id=_single_attribute(certificate, NameOID.ORGANIZATION_NAME, "O (cluster id)"),
    )


def verify_node_certificate(
    chain_pem: bytes, root: RootCA, now: datetime.datetime | None = None
) -> x509.Certificate:
    """The leaf of `chain_pem` (leaf first), once verified to chain to `root`, valid at `now`
    and usable for client authentication; raises CertificateError otherwise."""
    certificates = load_certificates(chain_pem, "node certificate")
    verifier = (
        PolicyBuilder().store(Store([root.certificate])).time(now or utcnow())
    ).build_client_verifier()
    try:
        verifier.verify(certificates[0], certificates[1:])
    except VerificationError as exc:
        raise CertificateError(
            f"node certificate is not valid for this cluster's root CA: {exc}"
        ) from exc
    return certificates[0]


def renewal_time(certificate: x509.Certificate, rng: random.Random) -> datetime.datetime:
    """A random instant in 50-80 % of the certificate's validity period."""
    start = certificate.not_valid_before_utc
    lifetime = certificate.not_valid_after_utc - start
    return start + lifetime * rng.uniform(*RENEWAL_WINDOW)


def seconds_until_renewal(
    certificate: x509.Certificate, now: datetime.datetime, rng: random.Random
) -> float:
    """How long a node waits before renewing `certificate` (0 when the time has passed)."""
    return max(0.0, (renewal_time(certificate, rng) - now).total_seconds())
