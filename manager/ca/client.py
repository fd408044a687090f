"""The node side of the CA: join a cluster with a token, renew a certificate.

Joining trusts nothing but the token: the node takes the join port's certificate unverified
only to ask for the root CA over it, keeps the root only if its digest is the one the token
pins and it signed that certificate, and then requests its certificate over TLS verified
against that root (the token never travels to an unverified server).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from manager.ca.certificates import (
    NodeIdentity,
    create_csr,
    read_node_identity,
    verify_node_certificate,
)
from manager.ca.errors import JoinError, RootCAMismatch
from manager.ca.join_tokens import JoinToken, check_root_pinned
from manager.ca.pem import certificate_pem, private_key_pem
from manager.ca.root_ca import RootCA
from manager.ca.tls import MANAGER_CHANNEL_OPTIONS, channel_credentials, fetch_server_certificate
from shoal.v1 import ca_pb2, ca_pb2_grpc, specs_pb2


@dataclass(frozen=True)
class NodeCredentials:
    """What a node needs for mutual TLS: its key, its certificate and the root it trusts."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    root: RootCA

    @property
    def identity(self) -> NodeIdentity:
        return read_node_identity(self.certificate)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return channel_credentials(
            self.root.cert_pem, certificate_pem(self.certificate), private_key_pem(self.key)
        )


def _rpc_failed(what: str, address: str, error: grpc.aio.AioRpcError) -> JoinError:
    return JoinError(f"{what} at {address} failed: {error.code().name}: {error.details()}")


async def fetch_pinned_root(address: str, token: JoinToken, timeout: float) -> RootCA:
    """The root CA served at `address` (a join port), once it matches what `token` pins."""
    try:
        server_certificate = await asyncio.to_thread(fetch_server_certificate, address, timeout)
    except (OSError, ValueError) as exc:
        raise JoinError(f"cannot reach a manager at {address}: {exc}") from exc
    credentials = channel_credentials(certificate_pem(server_certificate))
    async with grpc.aio.secure_channel(address, credentials, MANAGER_CHANNEL_OPTIONS) as channel:
        try:
            response = await ca_pb2_grpc.CAStub(channel).GetRootCACertificate(
                ca_pb2.GetRootCACertificateRequest(), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise _rpc_failed("fetching the root CA", address, exc) from exc
    root = RootCA.from_pem(response.certificate)
    check_root_pinned(token, root)
    try:
        server_certificate.verify_directly_issued_by(root.certificate)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise RootCAMismatch(
            f"the manager at {address} serves the pinned root CA but its own certificate is"
            " not issued by it"
        ) from exc
    return root


async def _request_certificate(
    channel: grpc.aio.Channel,
    address: str,
    request: ca_pb2.IssueNodeCertificateRequest,
    key: ec.EllipticCurvePrivateKey,
    root: RootCA,
    timeout: float,
) -> NodeCredentials:
    stub = ca_pb2_grpc.NodeCAStub(channel)
    try:
        issued = await stub.IssueNodeCertificate(request, timeout=timeout)
        status = await stub.NodeCertificateStatus(
            ca_pb2.NodeCertificateStatusRequest(node_id=issued.node_id), timeout=timeout
        )
    except grpc.aio.AioRpcError as exc:
        raise _rpc_failed("requesting a node certificate", address, exc) from exc
    certificate = verify_node_certificate(status.certificate.certificate, root)
    if certificate.public_key() != key.public_key():
        raise JoinError(f"the manager at {address} certified a key that is not this node's")
    if read_node_identity(certificate).node_id != issued.node_id:
        raise JoinError(f"the manager at {address} certified another node id")
    return NodeCredentials(key, certificate, root)


async def join_cluster(
    address: str,
    token_text: str,
    key: ec.EllipticCurvePrivateKey,
    timeout: float = 10.0,
    availability: specs_pb2.NodeSpec.Availability.ValueType = specs_pb2.NodeSpec.ACTIVE,
) -> NodeCredentials:
    """Joins through a manager's join port: pins its root CA, gets a certificate for `key`."""
    token = JoinToken.parse(token_text)
    root = await fetch_pinned_root(address, token, timeout)
    request = ca_pb2.IssueNodeCertificateRequest(
        csr=create_csr(key), token=token_text, availability=availability
    )
    credentials = channel_credentials(root.cert_pem)
    async with grpc.aio.secure_channel(address, credentials, MANAGER_CHANNEL_OPTIONS) as channel:
        return await _request_certificate(channel, address, request, key, root, timeout)


async def renew_certificate(
    address: str,
    current: NodeCredentials,
    new_key: ec.EllipticCurvePrivateKey,
    timeout: float = 10.0,
) -> NodeCredentials:
    """Renews through a manager's cluster port, authenticated by the current certificate."""
    request = ca_pb2.IssueNodeCertificateRequest(csr=create_csr(new_key))
    credentials = current.channel_credentials()
    async with grpc.aio.secure_channel(address, credentials, MANAGER_CHANNEL_OPTIONS) as channel:
        return await _request_certificate(channel, address, request, new_key, current.root, timeout)
