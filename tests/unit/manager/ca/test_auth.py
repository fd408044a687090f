from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from manager.ca.auth import AuthorizationInterceptor, Authorizer, requires, rpc_method
from manager.ca.certificates import NodeIdentity
from manager.ca.cluster_ca import ClusterCA
from manager.ca.errors import PermissionDenied, Unauthenticated
from manager.ca.roles import Role
from shoal.v1 import ca_pb2
from tests.unit.manager.ca.fakes import Aborted, FakeContext, node_certificate_pem

MANAGERS = requires(Role.MANAGER)
ANYONE = requires(Role.MANAGER, Role.WORKER, anonymous=True)


@pytest.fixture(scope="module")
def ca() -> ClusterCA:
    return ClusterCA.initialize()


@pytest.fixture(scope="module")
def authorizer(ca: ClusterCA) -> Authorizer:
    return Authorizer(ca.root, ca.cluster_id)


def context_for(ca: ClusterCA, node_id: str, role: Role) -> FakeContext:
    return FakeContext(node_certificate_pem(ca, node_id, role))


def test_identify_reads_the_verified_certificate(ca: ClusterCA, authorizer: Authorizer) -> None:
    caller = authorizer.identify(context_for(ca, "w1", Role.WORKER))
    assert caller == NodeIdentity("w1", Role.WORKER, ca.cluster_id)
    assert authorizer.identify(FakeContext()) is None


def test_manager_may_call_manager_method(ca: ClusterCA, authorizer: Authorizer) -> None:
    caller = authorizer.authorize(context_for(ca, "m1", Role.MANAGER), "/x.S/M", MANAGERS)
    assert caller is not None and caller.role is Role.MANAGER


def test_worker_is_denied_a_manager_method(ca: ClusterCA, authorizer: Authorizer) -> None:
    with pytest.raises(PermissionDenied, match=r"/x\.S/M is for swarm-manager only; node w1"):
        authorizer.authorize(context_for(ca, "w1", Role.WORKER), "/x.S/M", MANAGERS)


def test_no_certificate(authorizer: Authorizer) -> None:
    with pytest.raises(Unauthenticated, match=r"needs a client certificate.*none was presented"):
        authorizer.authorize(FakeContext(), "/x.S/M", MANAGERS)
    assert authorizer.authorize(FakeContext(), "/x.S/Open", ANYONE) is None


def test_anonymous_method_still_checks_a_presented_certificate(authorizer: Authorizer) -> None:
    foreign = ClusterCA.initialize()
    with pytest.raises(Unauthenticated, match="not valid for this cluster's root CA"):
        authorizer.authorize(context_for(foreign, "x1", Role.MANAGER), "/x.S/Open", ANYONE)


def test_certificate_of_another_cluster_id_is_denied(ca: ClusterCA) -> None:
    # Same root, different cluster id: only the O field differs.
    sibling = ClusterCA("othercluster", ca.root, ca.join_tokens)
    context = FakeContext(node_certificate_pem(sibling, "m1", Role.MANAGER))
    with pytest.raises(PermissionDenied, match="is for cluster othercluster, not"):
        Authorizer(ca.root, ca.cluster_id).identify(context)


def test_expired_certificate_is_unauthenticated(ca: ClusterCA) -> None:
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=91)
    authorizer = Authorizer(ca.root, ca.cluster_id, clock=lambda: later)
    with pytest.raises(Unauthenticated, match="client certificate refused"):
        authorizer.identify(context_for(ca, "w1", Role.WORKER))


def test_rpc_method_names_come_from_the_descriptor() -> None:
    name = rpc_method(ca_pb2.DESCRIPTOR, "CA", "GetUnlockKey")
    assert name == "/shoal.v1.CA/GetUnlockKey"
    with pytest.raises(KeyError, match="has no method Nope"):
        rpc_method(ca_pb2.DESCRIPTOR, "CA", "Nope")


class Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata: tuple[Any, ...] = ()


async def intercept(
    authorizer: Authorizer, method: str, handler: grpc.RpcMethodHandler
) -> grpc.RpcMethodHandler:
    interceptor = AuthorizationInterceptor(authorizer, {"/x.S/Managers": MANAGERS})

    async def continuation(details: Any) -> grpc.RpcMethodHandler:
        return handler

    return await interceptor.intercept_service(continuation, Details(method))


def denied_count(code: str) -> float:
    return REGISTRY.get_sample_value("shoal_ca_rpcs_denied_total", {"code": code}) or 0.0


async def echo(request: bytes, context: Any) -> bytes:
    return b"ran:" + request


async def test_interceptor_lets_an_allowed_unary_call_through(
    ca: ClusterCA, authorizer: Authorizer
) -> None:
    guarded = await intercept(
        authorizer, "/x.S/Managers", grpc.unary_unary_rpc_method_handler(echo)
    )
    context = context_for(ca, "m1", Role.MANAGER)
    assert await guarded.unary_unary(b"hi", context) == b"ran:hi"


async def test_interceptor_aborts_before_the_handler_runs(
    ca: ClusterCA, authorizer: Authorizer
) -> None:
    ran: list[bytes] = []

    async def record(request: bytes, context: Any) -> bytes:
        ran.append(request)
        return request

    guarded = await intercept(
        authorizer, "/x.S/Managers", grpc.unary_unary_rpc_method_handler(record)
    )
    before = denied_count("PERMISSION_DENIED")
    with pytest.raises(Aborted) as caught:
        await guarded.unary_unary(b"hi", context_for(ca, "w1", Role.WORKER))
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert ran == []
    assert denied_count("PERMISSION_DENIED") == before + 1

    with pytest.raises(Aborted) as caught:
        await guarded.unary_unary(b"hi", FakeContext())
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert ran == []


async def test_method_missing_from_the_table_is_refused_to_everyone(
    ca: ClusterCA, authorizer: Authorizer
) -> None:
    guarded = await intercept(
        authorizer, "/x.S/Unlisted", grpc.unary_unary_rpc_method_handler(echo)
    )
    with pytest.raises(
        Aborted, match=r"/x\.S/Unlisted states no allowed roles, so nobody may call it"
    ):
        await guarded.unary_unary(b"hi", context_for(ca, "m1", Role.MANAGER))


async def test_interceptor_guards_streaming_handlers(ca: ClusterCA, authorizer: Authorizer) -> None:
    async def numbers(request: bytes, context: Any) -> AsyncIterator[bytes]:
        for n in range(3):
            yield bytes([n])

    guarded = await intercept(
        authorizer, "/x.S/Managers", grpc.unary_stream_rpc_method_handler(numbers)
    )
    manager = context_for(ca, "m1", Role.MANAGER)
    assert [item async for item in guarded.unary_stream(b"", manager)] == [b"\0", b"\1", b"\2"]
    with pytest.raises(Aborted):
        async for _ in guarded.unary_stream(b"", context_for(ca, "w1", Role.WORKER)):
            pass

    async def total(requests: AsyncIterator[bytes], context: Any) -> bytes:
        return b"".join([item async for item in requests])

    async def two() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    client_stream = await intercept(
        authorizer, "/x.S/Managers", grpc.stream_unary_rpc_method_handler(total)
    )
    assert await client_stream.stream_unary(two(), manager) == b"ab"
    with pytest.raises(Aborted):
        await client_stream.stream_unary(two(), context_for(ca, "w1", Role.WORKER))


async def test_unknown_method_without_handler_passes_none(authorizer: Authorizer) -> None:
    interceptor = AuthorizationInterceptor(authorizer, {})

    async def continuation(details: Any) -> None:
        return None

    assert await interceptor.intercept_service(continuation, Details("/x.S/M")) is None
