"""Join tokens: `SWMTKN-1-<root CA digest>-<secret>`, one for workers and one for managers.

The digest (SHA-256 of the root CA's DER certificate, 50 base-36 digits) lets a joining node
pin the CA it is served before it trusts it; the secret (128 random bits, 25 base-36 digits)
is what proves the right to join. Rotating a role's token replaces its secret, so the old
token is refused from then on. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

from manager.ca import base36
from manager.ca.errors import InvalidJoinToken, JoinTokenRefused, RootCAMismatch
from manager.ca.roles import Role
from manager.ca.root_ca import RootCA
from shoal.v1 import types_pb2

PREFIX = "SWMTKN"
VERSION = "1"
DIGEST_BITS = 256
SECRET_BITS = 128
DIGEST_CHARS = base36.width_for_bits(DIGEST_BITS)
SECRET_CHARS = base36.width_for_bits(SECRET_BITS)


def _field(text: str, name: str, width: int, bits: int) -> int:
    if len(text) != width:
        raise InvalidJoinToken(
            f"join token {name} has {len(text)} characters, expected {width} base-36 digits"
        )
    try:
        value = base36.decode(text)
    except ValueError as exc:
        raise InvalidJoinToken(f"join token {name} is not base 36: {exc}") from exc
    if value >= 2**bits:
        raise InvalidJoinToken(f"join token {name} is larger than {bits} bits")
    return value


@dataclass(frozen=True)
class JoinToken:
    ca_digest: bytes
    secret: bytes

    def __str__(self) -> str:
        digest = base36.encode(int.from_bytes(self.ca_digest, "big"), DIGEST_CHARS)
        secret = base36.encode(int.from_bytes(self.secret, "big"), SECRET_CHARS)
        return f"{PREFIX}-{VERSION}-{digest}-{secret}"

    @classmethod
    def generate(
        cls, ca_digest: bytes, token_bytes: Callable[[int], bytes] = secrets.token_bytes
    ) -> JoinToken:
        return cls(ca_digest, token_bytes(SECRET_BITS // 8))

    @classmethod
    def parse(cls, text: str) -> JoinToken:
        """Parses a token; every malformation raises InvalidJoinToken naming the part."""
        parts = text.split("-")
        if len(parts) != 4:
            raise InvalidJoinToken(
                f"join token must have 4 dash-separated parts"
                f" ({PREFIX}-{VERSION}-<digest>-<secret>), got {len(parts)}"
            )
        prefix, version, digest, secret = parts
        if prefix != PREFIX:
            raise InvalidJoinToken(f"join token must start with {PREFIX!r}, not {prefix!r}")
        if version != VERSION:
            raise InvalidJoinToken(
                f"join token version {version!r} is not supported (expected {VERSION!r})"
            )
        digest_value = _field(digest, "CA digest", DIGEST_CHARS, DIGEST_BITS)
        secret_value = _field(secret, "secret", SECRET_CHARS, SECRET_BITS)
        return cls(
            digest_value.to_bytes(DIGEST_BITS // 8, "big"),
            secret_value.to_bytes(SECRET_BITS // 8, "big"),
        )


def check_root_pinned(token: JoinToken, root: RootCA) -> None:
    """The joining side's check: the root CA a manager served is the one the token names."""
    if not hmac.compare_digest(token.ca_digest, root.digest):
        raise RootCAMismatch(
            f"the manager's root CA (sha256:{root.digest.hex()}) is not the one the join token"
            f" pins (sha256:{token.ca_digest.hex()}): wrong cluster or an impostor"
        )


@dataclass(frozen=True)
class JoinTokens:
    """The cluster's current worker and manager tokens."""

    worker: JoinToken
    manager: JoinToken

    @classmethod
    def generate(
        cls, ca_digest: bytes, token_bytes: Callable[[int], bytes] = secrets.token_bytes
    ) -> JoinTokens:
        return cls(
            JoinToken.generate(ca_digest, token_bytes), JoinToken.generate(ca_digest, token_bytes)
        )

    def for_role(self, role: Role) -> JoinToken:
        return self.manager if role is Role.MANAGER else self.worker

    def rotate(
        self, role: Role, token_bytes: Callable[[int], bytes] = secrets.token_bytes
    ) -> JoinTokens:
        """The same tokens with a new secret for `role`: its old token is refused from now on."""
        fresh = JoinToken.generate(self.for_role(role).ca_digest, token_bytes)
        return replace(self, manager=fresh) if role is Role.MANAGER else replace(self, worker=fresh)

    def role_of(self, text: str) -> Role:
        """The role `text` admits; raises InvalidJoinToken (malformed) or JoinTokenRefused."""
        token = JoinToken.parse(text)
        if not hmac.compare_digest(token.ca_digest, self.worker.ca_digest):
            raise JoinTokenRefused(
                f"join token is for another root CA (sha256:{token.ca_digest.hex()}),"
                f" not this cluster's (sha256:{self.worker.ca_digest.hex()})"
            )
        given = str(token).encode()
        # Both comparisons always run, so timing tells nothing about which one nearly matched.
        is_manager = hmac.compare_digest(given, str(self.manager).encode())
        is_worker = hmac.compare_digest(given, str(self.worker).encode())
        if is_manager:
            return Role.MANAGER
        if is_worker:
            return Role.WORKER
        raise JoinTokenRefused("join token is not valid: it is wrong or has been rotated")

    def to_proto(self) -> types_pb2.JoinTokens:
        return types_pb2.JoinTokens(worker=str(self.worker), manager=str(self.manager))

    @classmethod
    def from_proto(cls, message: types_pb2.JoinTokens) -> JoinTokens:
        return cls(JoinToken.parse(message.worker), JoinToken.parse(message.manager))
