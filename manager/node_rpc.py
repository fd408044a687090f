"""What the services that nodes call (Dispatcher, LogBroker) share: who the caller is, from
its verified certificate, and a service's errors answered as gRPC status codes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NoReturn, TypeVar

import grpc

from manager.ca.auth import Authorizer
from manager.ca.errors import AuthorizationError, Unauthenticated

E = TypeVar("E", bound=Exception)

# Who is calling: the node id of the RPC's caller (raises AuthorizationError if unknown).
Identify = Callable[[grpc.aio.ServicerContext], str]


def certificate_identity(authorizer: Authorizer) -> Identify:
    """The caller's node id from its verified client certificate."""

    def identify(context: grpc.aio.ServicerContext) -> str:
        caller = authorizer.identify(context)
        if caller is None:
            raise Unauthenticated("this service needs the caller's node certificate")
        return caller.node_id

    return identify


async def caller_node(identify: Identify, context: grpc.aio.ServicerContext) -> str:
    """The calling node's id, or the call aborted with the authorization error's code."""
    try:
        return identify(context)
    except AuthorizationError as exc:
        await context.abort(exc.code, str(exc))
        raise  # abort raises; this only tells the type checker


async def abort_with(
    context: grpc.aio.ServicerContext,
    error: E,
    codes: Mapping[type[E], grpc.StatusCode],
) -> NoReturn:
    """End the call with the status code of `error`'s class in `codes` (else INTERNAL)."""
    code = next(
        (c for kind, c in codes.items() if isinstance(error, kind)), grpc.StatusCode.INTERNAL
    )
    await context.abort(code, str(error))
    raise error  # abort raises; this only tells the type checker


def peer_host(peer: str) -> str:
    """The address part of a gRPC peer string ("ipv4:10.0.0.2:4242" -> "10.0.0.2")."""
    scheme, _, rest = peer.partition(":")
    if scheme not in ("ipv4", "ipv6"):
        return ""
    return address_host(rest)


def address_host(address: str) -> str:
    """The host of "host:port" ("[::1]:4242" -> "::1")."""
    host = address.rpartition(":")[0]
    return host.removeprefix("[").removesuffix("]")
