"""The Control API client: a channel to one manager, and gRPC failures as one-line errors.

Locally through the manager's root-only unix socket; remotely with mutual TLS using a node
identity directory laid out as swarmd writes it (certificates/node.key, node.crt, root.crt).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from common.grpc_limits import MESSAGE_LIMITS
from shoal.v1 import control_pb2_grpc
from swarmctl.errors import SwarmctlError

DEFAULT_SOCKET = "/var/lib/swarmd/swarmd.sock"
MANAGER_SERVER_NAME = "swarm-manager"
CALL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Target:
    """Where the manager is: a unix socket path, or host:port plus an identity directory."""

    socket: str = DEFAULT_SOCKET
    host: str | None = None
    tls_dir: Path | None = None

    def describe(self) -> str:
        return self.host if self.host else f"unix://{self.socket}"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise SwarmctlError(f"cannot read {path}: {error.strerror}") from None


def open_channel(target: Target) -> grpc.Channel:
    if target.host is None:
        return grpc.insecure_channel(f"unix://{target.socket}", MESSAGE_LIMITS)
    if target.tls_dir is None:
        raise SwarmctlError("--host needs --tls-dir (a directory holding certificates/)")
    certs = target.tls_dir / "certificates"
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(certs / "root.crt"),
        private_key=_read(certs / "node.key"),
        certificate_chain=_read(certs / "node.crt"),
    )
    options = [("grpc.ssl_target_name_override", MANAGER_SERVER_NAME), *MESSAGE_LIMITS]
    return grpc.secure_channel(target.host, credentials, options)


def describe_rpc_error(error: grpc.RpcError, target: Target) -> str:
    """The message a person needs for a failed call, without gRPC's debug noise."""
    code = error.code()
    details = error.details() or code.name.lower()
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
        return f"cannot reach the manager at {target.describe()} ({details})"
    if code == grpc.StatusCode.UNAVAILABLE and not error.details():
        return f"cannot reach the manager at {target.describe()}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the manager at {target.describe()} did not answer in time"
    return str(details).splitlines()[0]


class Control:
    """The Control stub whose calls raise SwarmctlError instead of grpc.RpcError."""

    def __init__(self, channel: grpc.Channel, target: Target) -> None:
        self._stub = control_pb2_grpc.ControlStub(channel)
        self._target = target

    def call(self, method: str, request: Any) -> Any:
        rpc: Callable[..., Any] = getattr(self._stub, method)
        try:
            return rpc(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            raise SwarmctlError(describe_rpc_error(error, self._target)) from None


@contextmanager
def connect(target: Target) -> Iterator[Control]:
    channel = open_channel(target)
    try:
        yield Control(channel, target)
    finally:
        channel.close()
