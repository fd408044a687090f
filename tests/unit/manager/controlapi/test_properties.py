"""Property tests over the Control API with fuzzed messages (hypothesis): whatever a client
sends, the answer is OK or a refusal that names the problem (INVALID_ARGUMENT naming the
field, ALREADY_EXISTS, NOT_FOUND, FAILED_PRECONDITION), never INTERNAL or UNKNOWN; and
every object in the store still passes validation and refers only to objects that exist."""

from __future__ import annotations

import collections
import re
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from manager.controlapi.errors import InvalidArgument
from manager.controlapi.validation import (
    check_cluster_spec,
    check_config_spec,
    check_network_spec,
    check_node_spec,
    check_secret_spec,
    check_service_spec,
)
from manager.store import ReadTx
from shoal.v1 import control_pb2, objects_pb2, specs_pb2, types_pb2
from tests.unit.manager.controlapi.helpers import network_spec, node, service_spec
from tests.unit.manager.controlapi.proto_strategies import messages
from tests.unit.manager.controlapi.threaded import ThreadedControl

Code = grpc.StatusCode
REFUSALS = {
    Code.INVALID_ARGUMENT,
    Code.ALREADY_EXISTS,
    Code.NOT_FOUND,
    Code.FAILED_PRECONDITION,
}
# A field path: "spec.task.container.image: ...", "service_id: ...", "rotation.x: ...",
# "spec.annotations.labels['k']: ...", "spec.annotations.labels['kkk'... (300 characters)]".
_INDEX = r"\[(\d+|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")(\.\.\. \(\d+ characters\))?\]"
FIELD_PATH = re.compile(rf"[a-z_]+(\.[a-z_]+|{_INDEX})*( \(key\))?: ")
# gRPC's own receive limit; larger requests never reach the servicer.
MAX_REQUEST_BYTES = 4 * 1024 * 1024 - 1024
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
Outcomes = collections.Counter[str]


@pytest.fixture(scope="module")
def api() -> Iterator[ThreadedControl]:
    control = ThreadedControl()
    try:
        yield control
    finally:
        control.close()


def call(api: ThreadedControl, outcomes: Outcomes, method: str, request: Message) -> Any:
    """Calls `method`; returns the response, or None for an acceptable refusal."""
    assume(request.ByteSize() < MAX_REQUEST_BYTES)
    try:
        response = getattr(api.stub, method)(request, timeout=30)
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""
        outcomes[code.name] += 1
        assert code in REFUSALS, f"{method}: {code.name}: {details}"
        assert details, f"{method}: {code.name} without a message"
        assert len(details) < 2000, f"{method}: a {len(details)}-character message"
        if code == Code.INVALID_ARGUMENT:
            assert FIELD_PATH.match(details), f"{method}: no field named in {details!r}"
        return None
    outcomes["OK"] += 1
    return response


def stored_version(api: ThreadedControl, cls: type[Any], object_id: str) -> int:
    stored = api.store.view(lambda tx: tx.get(cls, object_id))
    assert stored is not None
    version: int = stored.meta.version
    return version


def check_everything_stored(api: ThreadedControl) -> None:
    def check(tx: ReadTx) -> None:
        networks = {n.id for n in tx.list(objects_pb2.Network)}
        secrets = {s.id for s in tx.list(objects_pb2.Secret)}
        configs = {c.id for c in tx.list(objects_pb2.Config)}
        for service in tx.list(objects_pb2.Service):
            check_service_spec(service.spec)
            if service.HasField("previous_spec"):
                check_service_spec(service.previous_spec, "previous_spec")
            container = service.spec.task.container
            assert not service.spec.networks
            assert {a.target for a in service.spec.task.networks} <= networks
            assert {r.secret_id for r in container.secrets} <= secrets
            assert {r.config_id for r in container.configs} <= configs
        for network in tx.list(objects_pb2.Network):
            check_network_spec(network.spec)
        for stored_node in tx.list(objects_pb2.Node):
            check_node_spec(stored_node.spec)
        for secret in tx.list(objects_pb2.Secret):
            check_secret_spec(secret.spec)
        for config in tx.list(objects_pb2.Config):
            check_config_spec(config.spec)
        for cluster in tx.list(objects_pb2.Cluster):
            check_cluster_spec(cluster.spec)

    api.store.view(check)


def specs(
    descriptor: Any, valid: Callable[[str], Message], density: int = 2
) -> st.SearchStrategy[Any]:
    """Arbitrary specs, and valid ones with a few fuzzed fields merged in."""
    names = st.integers(0, 10**9).map(lambda n: f"x{n}")
    overlaid = st.tuples(names.map(valid), messages(descriptor, density=6)).map(
        lambda pair: _merged(*pair)
    )
    return st.one_of(messages(descriptor, density=density), overlaid)


def _merged(base: Message, overlay: Message) -> Message:
    base.MergeFrom(overlay)
    return base


def test_fuzzed_service_specs(api: ThreadedControl) -> None:
    outcomes: Outcomes = collections.Counter()
    network = api.stub.CreateNetwork(
        control_pb2.CreateNetworkRequest(spec=network_spec("fuzz-net"))
    ).network
    service_specs = specs(specs_pb2.ServiceSpec.DESCRIPTOR, service_spec)

    @FUZZ
    @given(
        first=service_specs,
        second=service_specs,
        attach=st.booleans(),
        rollback=st.booleans(),
    )
    def run(
        first: specs_pb2.ServiceSpec,
        second: specs_pb2.ServiceSpec,
        attach: bool,
        rollback: bool,
    ) -> None:
        if attach:
            first.task.networks.add(target=network.id)
        created = call(api, outcomes, "CreateService", control_pb2.CreateServiceRequest(spec=first))
        if created is not None:
            service = created.service
            updated = call(
                api,
                outcomes,
                "UpdateService",
                control_pb2.UpdateServiceRequest(
                    service_id=service.id, service_version=service.meta.version, spec=second
                ),
            )
            if updated is not None and rollback:
                service = updated.service
                call(
                    api,
                    outcomes,
                    "UpdateService",
                    control_pb2.UpdateServiceRequest(
                        service_id=service.id,
                        service_version=service.meta.version,
                        rollback=control_pb2.UpdateServiceRequest.PREVIOUS,
                    ),
                )
        check_everything_stored(api)

    run()
    assert outcomes["OK"] and outcomes["INVALID_ARGUMENT"], outcomes


def test_fuzzed_node_specs(api: ThreadedControl) -> None:
    outcomes: Outcomes = collections.Counter()

    def valid_node_spec(name: str) -> specs_pb2.NodeSpec:
        spec = specs_pb2.NodeSpec(membership=specs_pb2.NodeSpec.ACCEPTED)
        spec.annotations.name = name
        return spec

    @FUZZ
    @given(
        role=st.sampled_from([types_pb2.WORKER, types_pb2.MANAGER]),
        state=st.sampled_from(list(types_pb2.NodeStatus.State.values())),
        spec=specs(specs_pb2.NodeSpec.DESCRIPTOR, valid_node_spec),
        remove=st.booleans(),
        force=st.booleans(),
    )
    def run(
        role: types_pb2.NodeRole.ValueType,
        state: types_pb2.NodeStatus.State.ValueType,
        spec: specs_pb2.NodeSpec,
        remove: bool,
        force: bool,
    ) -> None:
        fresh = node(name="fuzz-node", role=role, state=state)
        api.run(api.store.update(lambda tx: tx.create(fresh)))
        node_id = fresh.id
        got = call(api, outcomes, "GetNode", control_pb2.GetNodeRequest(node_id=node_id))
        if got is not None:
            call(
                api,
                outcomes,
                "UpdateNode",
                control_pb2.UpdateNodeRequest(
                    node_id=node_id, node_version=got.node.meta.version, spec=spec
                ),
            )
            if remove:
                call(
                    api,
                    outcomes,
                    "RemoveNode",
                    control_pb2.RemoveNodeRequest(node_id=node_id, force=force),
                )
        check_everything_stored(api)

    run()
    assert outcomes["OK"] and outcomes["INVALID_ARGUMENT"], outcomes


def test_fuzzed_network_specs(api: ThreadedControl) -> None:
    outcomes: Outcomes = collections.Counter()
    network_specs = specs(specs_pb2.NetworkSpec.DESCRIPTOR, network_spec)

    @FUZZ
    @given(first=network_specs, second=network_specs, remove=st.booleans())
    def run(first: specs_pb2.NetworkSpec, second: specs_pb2.NetworkSpec, remove: bool) -> None:
        created = call(api, outcomes, "CreateNetwork", control_pb2.CreateNetworkRequest(spec=first))
        if created is not None:
            network = created.network
            labelled = specs_pb2.NetworkSpec()
            labelled.CopyFrom(network.spec)
            labelled.annotations.labels.clear()
            labelled.annotations.labels.update(second.annotations.labels)
            for spec in (second, labelled):
                call(
                    api,
                    outcomes,
                    "UpdateNetwork",
                    control_pb2.UpdateNetworkRequest(
                        network_id=network.id,
                        network_version=stored_version(api, objects_pb2.Network, network.id),
                        spec=spec,
                    ),
                )
            if remove:
                call(
                    api,
                    outcomes,
                    "RemoveNetwork",
                    control_pb2.RemoveNetworkRequest(network_id=network.id),
                )
        check_everything_stored(api)

    run()
    assert outcomes["OK"] and outcomes["INVALID_ARGUMENT"], outcomes


def _payload_spec(cls: type[Any]) -> Callable[[str], Any]:
    def valid(name: str) -> Any:
        spec = cls(data=b"payload")
        spec.annotations.name = name
        return spec

    return valid


@pytest.mark.parametrize("kind", ["Secret", "Config"])
def test_fuzzed_secret_and_config_specs(api: ThreadedControl, kind: str) -> None:
    outcomes: Outcomes = collections.Counter()
    spec_class = getattr(specs_pb2, f"{kind}Spec")
    field = kind.lower()
    payload_specs = specs(spec_class.DESCRIPTOR, _payload_spec(spec_class))

    @FUZZ
    @given(first=payload_specs, second=payload_specs, remove=st.booleans())
    def run(first: Any, second: Any, remove: bool) -> None:
        request = getattr(control_pb2, f"Create{kind}Request")(spec=first)
        created = call(api, outcomes, f"Create{kind}", request)
        if created is not None:
            obj = getattr(created, field)
            update = getattr(control_pb2, f"Update{kind}Request")(spec=second)
            setattr(update, f"{field}_id", obj.id)
            setattr(update, f"{field}_version", obj.meta.version)
            call(api, outcomes, f"Update{kind}", update)
            if remove:
                remove_request = getattr(control_pb2, f"Remove{kind}Request")()
                setattr(remove_request, f"{field}_id", obj.id)
                call(api, outcomes, f"Remove{kind}", remove_request)
        check_everything_stored(api)

    run()
    assert outcomes["OK"] and outcomes["INVALID_ARGUMENT"], outcomes


def test_fuzzed_cluster_updates(api: ThreadedControl) -> None:
    from manager.ca.cluster_ca import ClusterCA

    outcomes: Outcomes = collections.Counter()
    ca = ClusterCA.initialize()
    cluster = objects_pb2.Cluster(id=ca.cluster_id)
    cluster.spec.annotations.name = "default"
    cluster.root_ca.join_tokens.CopyFrom(ca.join_tokens.to_proto())
    api.run(api.store.update(lambda tx: tx.create(cluster)))

    def valid_cluster_spec(name: str) -> specs_pb2.ClusterSpec:
        spec = specs_pb2.ClusterSpec()
        spec.annotations.name = "default"
        return spec

    @FUZZ
    @given(
        spec=specs(specs_pb2.ClusterSpec.DESCRIPTOR, valid_cluster_spec),
        rotation=messages(control_pb2.KeyRotation.DESCRIPTOR),
    )
    def run(spec: specs_pb2.ClusterSpec, rotation: control_pb2.KeyRotation) -> None:
        call(
            api,
            outcomes,
            "UpdateCluster",
            control_pb2.UpdateClusterRequest(
                cluster_id=cluster.id,
                cluster_version=stored_version(api, objects_pb2.Cluster, cluster.id),
                spec=spec,
                rotation=rotation,
            ),
        )
        check_everything_stored(api)

    run()
    assert outcomes["OK"] and outcomes["INVALID_ARGUMENT"], outcomes


CONTROL_METHODS = list(control_pb2.DESCRIPTOR.services_by_name["Control"].methods)


@st.composite
def any_request(draw: st.DrawFn) -> tuple[str, Message]:
    method = draw(st.sampled_from(CONTROL_METHODS))
    return method.name, draw(messages(method.input_type))


def test_fuzzed_requests_to_every_method(api: ThreadedControl) -> None:
    outcomes: Outcomes = collections.Counter()

    @settings(FUZZ, max_examples=400)
    @given(request=any_request())
    def run(request: tuple[str, Message]) -> None:
        call(api, outcomes, *request)
        check_everything_stored(api)

    run()
    assert outcomes["OK"] and outcomes["INVALID_ARGUMENT"], outcomes


@pytest.mark.parametrize(
    ("spec_class", "check"),
    [
        (specs_pb2.ServiceSpec, check_service_spec),
        (specs_pb2.NodeSpec, check_node_spec),
        (specs_pb2.NetworkSpec, check_network_spec),
        (specs_pb2.ClusterSpec, check_cluster_spec),
        (specs_pb2.SecretSpec, check_secret_spec),
        (specs_pb2.ConfigSpec, check_config_spec),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_validators_raise_nothing_but_invalid_argument(
    spec_class: type[Any], check: Callable[[Any], None]
) -> None:
    @settings(FUZZ, max_examples=300)
    @given(spec=messages(spec_class.DESCRIPTOR))
    def run(spec: Any) -> None:
        try:
            check(spec)
        except InvalidArgument as error:
            assert FIELD_PATH.match(str(error)), str(error)

    run()
