"""Errors of the certificate authority; each message names the problem."""

from __future__ import annotations

import grpc


class CAError(Exception):
    """Base of every error the CA package raises."""


class InvalidJoinToken(CAError):
    """A join token that is not of the form SWMTKN-1-<digest>-<secret>."""


class JoinTokenRefused(CAError):
    """A well-formed join token that is not one of the cluster's current tokens."""


class RootCAMismatch(CAError):
    """The root CA a manager served is not the one the join token pins."""


class CertificateError(CAError):
    """A certificate, signing request or key that is malformed or not acceptable."""


class CAConfigError(CAError):
    """A CA setting out of range (e.g. a node certificate lifetime under an hour)."""


class UnknownNode(CAError):
    """A node id the registry does not know."""


class JoinError(CAError):
    """Joining the cluster or renewing a certificate failed at a manager."""


class AuthorizationError(CAError):
    """A call refused by the authorization layer; `code` is the gRPC status to answer with."""

    code: grpc.StatusCode = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(AuthorizationError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(AuthorizationError):
    code = grpc.StatusCode.PERMISSION_DENIED


class RegistryUnavailable(CAError):
    """The node registry cannot take the change now (this manager lost the raft leader)."""
