from __future__ import annotations

import datetime
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import duration_pb2

from manager.ca.certificates import (
    DEFAULT_NODE_CERT_LIFETIME,
    MAX_CSR_BYTES,
    NodeIdentity,
    create_csr,
    generate_node_key,
    issue_node_certificate,
    node_cert_lifetime,
    read_node_identity,
    renewal_time,
    seconds_until_renewal,
    verify_node_certificate,
)
from manager.ca.errors import CAConfigError, CertificateError
from manager.ca.pem import certificate_pem
from manager.ca.roles import Role
from manager.ca.root_ca import CLOCK_SKEW_ALLOWANCE, RootCA
from shoal.v1 import specs_pb2

NOW = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)
WORKER = NodeIdentity("node1", Role.WORKER, "cluster1")
MANAGER = NodeIdentity("node2", Role.MANAGER, "cluster1")


class FixedRandom(random.Random):
    """uniform(a, b) always answers a + fraction * (b - a)."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + self.fraction * (b - a)


@pytest.fixture(scope="module")
def root() -> RootCA:
    return RootCA.create(NOW - datetime.timedelta(days=1))


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return generate_node_key()


def issue(root: RootCA, key: ec.EllipticCurvePrivateKey, node: NodeIdentity) -> x509.Certificate:
    return issue_node_certificate(root, create_csr(key), node, now=NOW)


def names(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> list[object]:
    return [attribute.value for attribute in certificate.subject.get_attributes_for_oid(oid)]


def test_issued_certificate_fields(root: RootCA, key: ec.EllipticCurvePrivateKey) -> None:
    certificate = issue(root, key, WORKER)

    assert names(certificate, NameOID.COMMON_NAME) == ["node1"]
    assert names(certificate, NameOID.ORGANIZATIONAL_UNIT_NAME) == ["swarm-worker"]
    assert names(certificate, NameOID.ORGANIZATION_NAME) == ["cluster1"]
    assert certificate.issuer == root.certificate.subject
    assert certificate.public_key() == key.public_key()
    assert certificate.not_valid_after_utc == NOW + DEFAULT_NODE_CERT_LIFETIME
    assert certificate.not_valid_before_utc == NOW - CLOCK_SKEW_ALLOWANCE
    assert datetime.timedelta(days=90) == DEFAULT_NODE_CERT_LIFETIME
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node1", "swarm-worker"]
    certificate.verify_directly_issued_by(root.certificate)


def test_manager_certificate_names_the_manager_role(
    root: RootCA, key: ec.EllipticCurvePrivateKey
) -> None:
    certificate = issue(root, key, MANAGER)
    assert names(certificate, NameOID.ORGANIZATIONAL_UNIT_NAME) == ["swarm-manager"]
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "swarm-manager" in san.get_values_for_type(x509.DNSName)


def test_csr_names_are_ignored(root: RootCA, key: ec.EllipticCurvePrivateKey) -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "chosen-by-node"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "swarm-manager"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())

    certificate = issue_node_certificate(
        root, csr.public_bytes(serialization.Encoding.PEM), WORKER, now=NOW
    )

    assert read_node_identity(certificate) == WORKER


def test_lifetime_from_cluster_spec() -> None:
    assert node_cert_lifetime(None) == datetime.timedelta(days=90)
    assert node_cert_lifetime(specs_pb2.ClusterSpec()) == datetime.timedelta(days=90)
    spec = specs_pb2.ClusterSpec()
    spec.ca_config.node_cert_expiry.CopyFrom(duration_pb2.Duration(seconds=7200))
    assert node_cert_lifetime(spec) == datetime.timedelta(hours=2)
    spec.ca_config.node_cert_expiry.CopyFrom(duration_pb2.Duration(seconds=60))
    with pytest.raises(CAConfigError, match="shorter than the minimum 1:00:00"):
        node_cert_lifetime(spec)


def test_custom_lifetime_and_clamp_to_root(root: RootCA, key: ec.EllipticCurvePrivateKey) -> None:
    short = issue_node_certificate(
        root, create_csr(key), WORKER, datetime.timedelta(hours=2), now=NOW
    )
    assert short.not_valid_after_utc == NOW + datetime.timedelta(hours=2)
    near_end = root.certificate.not_valid_after_utc - datetime.timedelta(days=1)
    clamped = issue_node_certificate(root, create_csr(key), WORKER, now=near_end)
    assert clamped.not_valid_after_utc == root.certificate.not_valid_after_utc


@pytest.mark.parametrize(
    ("csr", "message"),
    [
        (b"", "signing request is empty"),
        (b"junk", "signing request is not valid PEM"),
        (b"x" * (MAX_CSR_BYTES + 1), f"more than {MAX_CSR_BYTES}"),
    ],
)
def test_bad_csr_is_refused(root: RootCA, csr: bytes, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        issue_node_certificate(root, csr, WORKER, now=NOW)


def test_csr_for_rsa_key_is_refused(root: RootCA) -> None:
    rsa_key = rsa.generate_private_key(65537, 2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(rsa_key, hashes.SHA256())
    )
    with pytest.raises(CertificateError, match="ECDSA P-256"):
        issue_node_certificate(root, csr.public_bytes(serialization.Encoding.PEM), WORKER, now=NOW)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (NodeIdentity("", Role.WORKER, "c"), "node id '' must be"),
        (NodeIdentity("Node.1", Role.WORKER, "c"), "node id 'Node.1' must be"),
        (NodeIdentity("n" * 64, Role.WORKER, "c"), "must be 1-63 characters"),
        (NodeIdentity("n", Role.WORKER, "bad cluster"), "cluster id 'bad cluster' must be"),
    ],
)
def test_bad_names_are_refused(
    root: RootCA, key: ec.EllipticCurvePrivateKey, node: NodeIdentity, message: str
) -> None:
    with pytest.raises(CertificateError, match=message):
        issue_node_certificate(root, create_csr(key), node, now=NOW)


def test_root_without_key_cannot_issue(root: RootCA, key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(Exception, match="only managers sign"):
        issue(RootCA(root.certificate), key, WORKER)


def test_verify_accepts_own_root_and_refuses_a_foreign_one(
    root: RootCA, key: ec.EllipticCurvePrivateKey
) -> None:
    pem = certificate_pem(issue(root, key, WORKER))
    assert read_node_identity(verify_node_certificate(pem, root, NOW)) == WORKER

    foreign = RootCA.create(NOW - datetime.timedelta(days=1))
    with pytest.raises(CertificateError, match="not valid for this cluster's root CA"):
        verify_node_certificate(pem, foreign, NOW)


def test_verify_refuses_expired_and_not_yet_valid(
    root: RootCA, key: ec.EllipticCurvePrivateKey
) -> None:
    pem = certificate_pem(issue(root, key, WORKER))
    with pytest.raises(CertificateError, match="root CA"):
        verify_node_certificate(pem, root, NOW + datetime.timedelta(days=91))
    with pytest.raises(CertificateError, match="root CA"):
        verify_node_certificate(pem, root, NOW - datetime.timedelta(hours=2))


def test_verify_refuses_garbage(root: RootCA) -> None:
    with pytest.raises(CertificateError, match="node certificate is not a PEM certificate"):
        verify_node_certificate(b"nope", root, NOW)


def test_read_identity_of_both_roles(root: RootCA, key: ec.EllipticCurvePrivateKey) -> None:
    assert read_node_identity(issue(root, key, WORKER)) == WORKER
    assert read_node_identity(issue(root, key, MANAGER)) == MANAGER


def self_signed(key: ec.EllipticCurvePrivateKey, subject: x509.Name) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ([(NameOID.COMMON_NAME, "n"), (NameOID.ORGANIZATION_NAME, "c")], "one OU"),
        (
            [
                (NameOID.COMMON_NAME, "n"),
                (NameOID.ORGANIZATIONAL_UNIT_NAME, "swarm-ca"),
                (NameOID.ORGANIZATION_NAME, "c"),
            ],
            "OU 'swarm-ca' is not a node role",
        ),
        (
            [(NameOID.COMMON_NAME, "n"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "swarm-worker")],
            "one O",
        ),
        (
            [
                (NameOID.COMMON_NAME, "a"),
                (NameOID.COMMON_NAME, "b"),
                (NameOID.ORGANIZATIONAL_UNIT_NAME, "swarm-worker"),
                (NameOID.ORGANIZATION_NAME, "c"),
            ],
            "exactly one CN.*has 2",
        ),
    ],
)
def test_read_identity_errors(
    key: ec.EllipticCurvePrivateKey,
    attributes: list[tuple[x509.ObjectIdentifier, str]],
    message: str,
) -> None:
    subject = x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])
    with pytest.raises(CertificateError, match=message):
        read_node_identity(self_signed(key, subject))


def test_renewal_time_spans_50_to_80_percent(root: RootCA, key: ec.EllipticCurvePrivateKey) -> None:
    certificate = issue(root, key, WORKER)
    start = certificate.not_valid_before_utc
    lifetime = certificate.not_valid_after_utc - start

    assert renewal_time(certificate, FixedRandom(0.0)) == start + lifetime * 0.5
    assert renewal_time(certificate, FixedRandom(1.0)) == start + lifetime * 0.8
    draws = [renewal_time(certificate, random.Random(seed)) for seed in range(200)]
    assert all(start + lifetime * 0.5 <= at <= start + lifetime * 0.8 for at in draws)
    assert len(set(draws)) > 150


def test_seconds_until_renewal_with_a_fake_clock(
    root: RootCA, key: ec.EllipticCurvePrivateKey
) -> None:
    certificate = issue(root, key, WORKER)
    at = renewal_time(certificate, FixedRandom(0.5))
    assert (
        at
        == certificate.not_valid_before_utc
        + (certificate.not_valid_after_utc - certificate.not_valid_before_utc) * 0.65
    )

    wait = seconds_until_renewal(certificate, at - datetime.timedelta(hours=3), FixedRandom(0.5))
    assert wait == pytest.approx(3 * 3600)
    assert (
        seconds_until_renewal(certificate, at + datetime.timedelta(days=1), FixedRandom(0.5)) == 0
    )
