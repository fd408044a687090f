from __future__ import annotations

import datetime
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from manager.ca.certificates import create_csr, generate_node_key
from manager.ca.cluster_ca import ClusterCA
from manager.ca.errors import CAError, CertificateError
from manager.ca.pem import private_key_pem
from manager.ca.roles import Role
from manager.ca.root_ca import ROOT_LIFETIME, RootCA

NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def root() -> RootCA:
    return RootCA.create(NOW)


def test_created_root_is_a_p256_ca_valid_twenty_years(root: RootCA) -> None:
    certificate = root.certificate
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [name.value for name in common_names] == ["shoal-root-ca"]
    assert certificate.issuer == certificate.subject
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    assert certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    assert certificate.not_valid_after_utc == NOW + ROOT_LIFETIME
    assert datetime.timedelta(days=365 * 20) <= ROOT_LIFETIME
    assert certificate.not_valid_before_utc <= NOW


def test_digest_is_sha256_of_der(root: RootCA) -> None:
    der = root.certificate.public_bytes(serialization.Encoding.DER)
    assert root.digest == hashlib.sha256(der).digest()


def test_pem_round_trip_with_and_without_key(root: RootCA) -> None:
    full = RootCA.from_pem(root.cert_pem, root.key_pem)
    assert full.certificate == root.certificate
    assert full.key_pem == root.key_pem
    public_only = RootCA.from_pem(root.cert_pem)
    assert public_only.private_key is None
    with pytest.raises(CAError, match="no private key: only managers sign"):
        _ = public_only.key_pem


def test_save_and_load_files_with_mode_0600(root: RootCA, tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "root.crt", tmp_path / "root.key"
    root.save(cert_path, key_path)

    for path in (cert_path, key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = RootCA.load(cert_path, key_path)
    assert loaded.digest == root.digest
    assert loaded.key_pem == root.key_pem


def test_load_missing_file_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(CAError, match="cannot read the root CA"):
        RootCA.load(tmp_path / "absent.crt")


@pytest.mark.parametrize(
    ("cert", "message"),
    [
        (b"not pem", "root CA certificate is not a PEM certificate"),
        (b"", "root CA certificate is not a PEM certificate"),
    ],
)
def test_garbage_certificate_is_refused(cert: bytes, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        RootCA.from_pem(cert)


def test_two_certificates_are_refused(root: RootCA) -> None:
    with pytest.raises(CertificateError, match="holds 2 certificates, expected 1"):
        RootCA.from_pem(root.cert_pem + root.cert_pem)


def test_node_certificate_is_not_accepted_as_root(root: RootCA) -> None:
    ca = ClusterCA.initialize()
    node = ca.issue(create_csr(generate_node_key()), "node1", Role.WORKER)
    pem = node.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CertificateError, match="not a CA"):
        RootCA.from_pem(pem)


def test_key_that_does_not_match_is_refused(root: RootCA) -> None:
    other = private_key_pem(generate_node_key())
    with pytest.raises(CertificateError, match="does not match"):
        RootCA.from_pem(root.cert_pem, other)


def test_non_p256_key_is_refused(root: RootCA) -> None:
    rsa_pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(CertificateError, match="not an ECDSA P-256 key"):
        RootCA.from_pem(root.cert_pem, rsa_pem)
    with pytest.raises(CertificateError, match="not an unencrypted PEM private key"):
        RootCA.from_pem(root.cert_pem, b"garbage")


def test_proto_round_trip_and_hash_check(root: RootCA) -> None:
    message = root.to_proto()
    assert message.ca_cert_hash == f"sha256:{root.digest.hex()}"
    assert RootCA.from_proto(message).key_pem == root.key_pem
    assert RootCA(root.certificate).to_proto().ca_key == b""

    message.ca_cert_hash = "sha256:" + "0" * 64
    with pytest.raises(CertificateError, match="does not match its certificate"):
        RootCA.from_proto(message)
