"""Node roles as certificates name them (the OU) and as the API numbers them."""

from __future__ import annotations

import enum

from manager.ca.errors import CertificateError
from shoal.v1 import types_pb2


class Role(enum.Enum):
    WORKER = "swarm-worker"
    MANAGER = "swarm-manager"

    @property
    def ou(self) -> str:
        """The organizational unit of a certificate for this role."""
        return self.value

    def to_proto(self) -> types_pb2.NodeRole.ValueType:
        return types_pb2.MANAGER if self is Role.MANAGER else types_pb2.WORKER

    @classmethod
    def from_proto(cls, value: types_pb2.NodeRole.ValueType) -> Role:
        if value == types_pb2.MANAGER:
            return cls.MANAGER
        if value == types_pb2.WORKER:
            return cls.WORKER
        raise CertificateError(f"unknown node role number {value}")

    @classmethod
    def from_ou(cls, ou: str) -> Role:
        for role in cls:
            if role.ou == ou:
                return role
        known = ", ".join(repr(role.ou) for role in cls)
        raise CertificateError(f"certificate OU {ou!r} is not a node role (expected {known})")
