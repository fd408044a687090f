"""TLS material for gRPC: channel credentials, the server name clients check, the bootstrap
fetch of a manager's certificate, and key/certificate files written with mode 0600. A
manager's server credentials are manager/reloadable_tls.py's (renewed while serving).

Why a manager listens on two ports: gRPC Python's `require_client_auth=False` does not merely
make the client certificate optional, it stops the server from asking for one at all, so a
single port could not both admit joining nodes (no certificate yet) and identify the others.
So the cluster port requires and verifies a client certificate at the handshake (mutual TLS),
and a join port runs server-authenticated TLS only. Both serve the same services behind the
same authorization interceptor: on the join port no caller has a certificate, so only the
bootstrap methods (which a join token or nothing at all authenticates) get through, and every
other method answers UNAUTHENTICATED.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from pathlib import Path

import grpc
from cryptography import x509

from common.grpc_limits import MESSAGE_LIMITS
from manager.ca.roles import Role

# Certificates name nodes, not addresses: a node dialling a manager checks that the server
# holds a manager certificate of the cluster, whatever its address.
MANAGER_SERVER_NAME = Role.MANAGER.ou
MANAGER_CHANNEL_OPTIONS: tuple[tuple[str, str | int], ...] = (
    ("grpc.ssl_target_name_override", MANAGER_SERVER_NAME),
    *MESSAGE_LIMITS,
)


def channel_credentials(
    trusted_pem: bytes, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> grpc.ChannelCredentials:
    """Trusts only `trusted_pem` (the root CA, or a pinned server certificate while
    bootstrapping) and presents the node's certificate when one is given."""
    return grpc.ssl_channel_credentials(
        root_certificates=trusted_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def split_address(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` as (host, port); ValueError names what is wrong."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {address!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def fetch_server_certificate(address: str, timeout: float) -> x509.Certificate:
    """The certificate a TLS server presents, unverified (blocking).

    Only for bootstrapping: the caller trusts it just long enough to ask for the root CA,
    then checks the root against its join token and this certificate against the root.
    """
    host, port = split_address(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=MANAGER_SERVER_NAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError(f"{address} presented no certificate")
    return x509.load_der_x509_certificate(der)


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically replaces `path` with `data`, mode 0600, durable once this returns."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)  # left by a crash; never written through
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, 0o600)  # the umask may have taken bits away
        file.write(data)
        file.flush()
        os.fsync(fd)
    try:
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
