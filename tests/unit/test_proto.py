"""Tests of Shoal's generated gRPC/protobuf API (``shoal.v1``).

The generated code is committed beside the .proto files; the first test makes
sure it is exactly what ``proto/gen.py`` produces from them today.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from shoal.v1 import (
    ca_pb2,
    ca_pb2_grpc,
    control_pb2_grpc,
    dispatcher_pb2_grpc,
    logs_pb2_grpc,
    objects_pb2,
    raft_pb2_grpc,
    specs_pb2,
    store_pb2,
    types_pb2,
)

PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"
API_DIR = PROTO_ROOT / "shoal" / "v1"
GEN = PROTO_ROOT / "gen.py"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi", "_pb2_grpc.pyi")
PROTO_STEMS = sorted(p.stem for p in API_DIR.glob("*.proto"))

TASK_STATES = {
    "NEW": 0,
    "PENDING": 64,
    "ASSIGNED": 192,
    "ACCEPTED": 256,
    "PREPARING": 320,
    "READY": 384,
    "STARTING": 448,
    "RUNNING": 512,
    "COMPLETE": 576,
    "SHUTDOWN": 640,
    "FAILED": 704,
    "REJECTED": 768,
    "REMOVE": 800,
    "ORPHANED": 832,
}

SERVICES: list[tuple[ModuleType, str]] = [
    (control_pb2_grpc, "Control"),
    (dispatcher_pb2_grpc, "Dispatcher"),
    (ca_pb2_grpc, "NodeCA"),
    (ca_pb2_grpc, "CA"),
    (raft_pb2_grpc, "RaftMembership"),
    (raft_pb2_grpc, "RaftTransport"),
    (logs_pb2_grpc, "Logs"),
    (logs_pb2_grpc, "LogBroker"),
]


def generated_files(directory: Path) -> dict[str, bytes]:
    """Map the name of every generated file in ``directory`` to its content."""
    return {
        p.name: p.read_bytes() for p in directory.iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    }


# ---- (a) committed code == fresh generation ----


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(GEN), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"proto/gen.py failed:\n{result.stderr}"
    fresh = generated_files(tmp_path / "shoal" / "v1")
    committed = generated_files(API_DIR)
    expected = {stem + suffix for stem in PROTO_STEMS for suffix in GENERATED_SUFFIXES}
    assert set(fresh) == expected
    hint = "regenerate with: python proto/gen.py"
    assert sorted(expected - set(committed)) == [], f"generated files missing; {hint}"
    assert sorted(set(committed) - expected) == [], f"stale generated files; {hint}"
    outdated = sorted(name for name in expected if committed[name] != fresh[name])
    assert outdated == [], f"generated files out of date; {hint}"


# ---- (b) every module imports; messages round-trip ----


@pytest.mark.parametrize("stem", PROTO_STEMS)
def test_modules_import(stem: str) -> None:
    pb2 = importlib.import_module(f"shoal.v1.{stem}_pb2")
    importlib.import_module(f"shoal.v1.{stem}_pb2_grpc")
    assert pb2.DESCRIPTOR.name == f"shoal/v1/{stem}.proto"
    assert pb2.DESCRIPTOR.package == "shoal.v1"


def make_service() -> objects_pb2.Service:
    container = specs_pb2.ContainerSpec(
        image="registry:5000/busybox:1",
        command=["httpd"],
        args=["-f", "-p", "80"],
        env=["MODE=prod"],
        labels={"app": "web"},
        stop_grace_period=duration_pb2.Duration(seconds=10),
        mounts=[
            types_pb2.Mount(
                type=types_pb2.Mount.TMPFS,
                target="/tmp",
                tmpfs_options=types_pb2.Mount.TmpfsOptions(size_bytes=1 << 20, mode=0o1777),
            )
        ],
        secrets=[
            specs_pb2.SecretReference(
                secret_id="sec1", secret_name="db-password", file=specs_pb2.FileTarget(name="db")
            )
        ],
    )
    spec = specs_pb2.ServiceSpec(
        annotations=types_pb2.Annotations(name="web", labels={"tier": "front"}),
        task=specs_pb2.TaskSpec(
            container=container,
            resources=types_pb2.ResourceRequirements(
                reservations=types_pb2.Resources(nano_cpus=500_000_000, memory_bytes=64 << 20)
            ),
            restart=types_pb2.RestartPolicy(
                condition=types_pb2.RestartPolicy.ON_FAILURE,
                delay=duration_pb2.Duration(seconds=5),
                max_attempts=3,
            ),
            placement=types_pb2.Placement(
                constraints=["node.role==worker"],
                preferences=[
                    types_pb2.PlacementPreference(
                        spread=types_pb2.SpreadOver(spread_descriptor="node.labels.zone")
                    )
                ],
                max_replicas=2,
            ),
            networks=[specs_pb2.NetworkAttachmentConfig(target="net1", aliases=["www"])],
        ),
        replicated_service=specs_pb2.ReplicatedService(replicas=3),
        update=types_pb2.UpdateConfig(
            parallelism=2,
            order=types_pb2.UpdateConfig.START_FIRST,
            failure_action=types_pb2.UpdateConfig.ROLLBACK,
            max_failure_ratio=0.25,
        ),
        endpoint=types_pb2.EndpointSpec(
            ports=[types_pb2.PortConfig(name="http", target_port=80, published_port=8080)]
        ),
    )
    return objects_pb2.Service(
        id="svc1",
        meta=types_pb2.Meta(version=7, created_at=timestamp_pb2.Timestamp(seconds=1_700_000_000)),
        spec=spec,
        spec_version=types_pb2.Version(index=7),
        endpoint=objects_pb2.Endpoint(
            virtual_ips=[objects_pb2.VirtualIP(network_id="net1", addr="10.0.0.2/24")]
        ),
    )


def make_task(service: objects_pb2.Service) -> objects_pb2.Task:
    return objects_pb2.Task(
        id="task1",
        meta=types_pb2.Meta(version=9),
        spec=service.spec.task,
        spec_version=service.spec_version,
        service_id=service.id,
        slot=1,
        node_id="node1",
        annotations=types_pb2.Annotations(name="web.1.task1"),
        service_annotations=service.spec.annotations,
        status=types_pb2.TaskStatus(
            timestamp=timestamp_pb2.Timestamp(seconds=1_700_000_010),
            state=types_pb2.RUNNING,
            message="started",
            container_status=types_pb2.ContainerStatus(container_id="c1", pid=4242),
        ),
        desired_state=types_pb2.RUNNING,
        networks=[
            objects_pb2.NetworkAttachment(
                network=objects_pb2.Network(id="net1"), addresses=["10.0.0.5/24"]
            )
        ],
    )


def test_service_round_trip() -> None:
    service = make_service()
    back = objects_pb2.Service.FromString(service.SerializeToString())
    assert back == service
    assert back.spec.WhichOneof("mode") == "replicated_service"
    assert back.spec.replicated_service.replicas == 3
    assert back.spec.task.WhichOneof("runtime") == "container"
    assert back.spec.task.container.stop_grace_period.seconds == 10
    assert back.spec.update.order == types_pb2.UpdateConfig.START_FIRST
    assert not back.HasField("previous_spec")
    assert not back.HasField("update_status")


def test_task_round_trip() -> None:
    task = make_task(make_service())
    back = objects_pb2.Task.FromString(task.SerializeToString())
    assert back == task
    assert back.status.state == types_pb2.RUNNING
    assert back.status.container_status.pid == 4242
    assert back.networks[0].network.id == "net1"
    assert back.spec_version.index == 7


def test_store_actions_round_trip() -> None:
    service = make_service()
    batch = store_pb2.StoreActions(
        proposer_id="manager-1/0f3c",
        sequence=42,
        actions=[
            store_pb2.StoreAction(kind=store_pb2.StoreAction.CREATE, service=service),
            store_pb2.StoreAction(kind=store_pb2.StoreAction.UPDATE, task=make_task(service)),
            store_pb2.StoreAction(
                kind=store_pb2.StoreAction.REMOVE, node=objects_pb2.Node(id="n9")
            ),
        ],
    )
    back = store_pb2.StoreActions.FromString(batch.SerializeToString())
    assert back == batch
    assert [a.WhichOneof("target") for a in back.actions] == ["service", "task", "node"]
    assert back.actions[0].service.spec.replicated_service.replicas == 3
    # An empty batch (a barrier) is valid and still identifies its proposal.
    barrier = store_pb2.StoreActions.FromString(
        store_pb2.StoreActions(proposer_id="m", sequence=1).SerializeToString()
    )
    assert (barrier.proposer_id, barrier.sequence, len(barrier.actions)) == ("m", 1, 0)


def test_zero_values_are_the_defaults() -> None:
    assert objects_pb2.Task().desired_state == types_pb2.NEW
    assert specs_pb2.NodeSpec().availability == specs_pb2.NodeSpec.ACTIVE
    assert types_pb2.RestartPolicy().condition == types_pb2.RestartPolicy.ANY
    assert types_pb2.UpdateConfig().order == types_pb2.UpdateConfig.STOP_FIRST
    assert types_pb2.UpdateConfig().failure_action == types_pb2.UpdateConfig.PAUSE
    assert store_pb2.StoreAction().kind == store_pb2.StoreAction.UNKNOWN


# ---- (c) task states are ordered ----


def test_task_states_have_swarmkit_values_in_order() -> None:
    assert types_pb2.TaskState.keys() == list(TASK_STATES)
    assert {name: int(types_pb2.TaskState.Value(name)) for name in TASK_STATES} == TASK_STATES
    values = list(TASK_STATES.values())
    assert values == sorted(values)
    assert len(set(values)) == len(values)


def test_task_states_compare_in_lifecycle_order() -> None:
    t = types_pb2
    assert t.NEW < t.PENDING < t.ASSIGNED < t.ACCEPTED < t.PREPARING < t.READY
    assert t.READY < t.STARTING < t.RUNNING < t.COMPLETE < t.SHUTDOWN < t.FAILED
    assert t.FAILED < t.REJECTED < t.REMOVE < t.ORPHANED


# ---- (d) services have stubs and servicers ----


@pytest.mark.parametrize(("module", "name"), SERVICES, ids=[name for _, name in SERVICES])
def test_service_has_stub_and_servicer(module: ModuleType, name: str) -> None:
    stub = getattr(module, f"{name}Stub")
    servicer = getattr(module, f"{name}Servicer")
    assert isinstance(stub, type)
    assert isinstance(servicer, type)
    assert callable(getattr(module, f"add_{name}Servicer_to_server"))
    pb2 = importlib.import_module(module.__name__.removesuffix("_grpc"))
    methods = pb2.DESCRIPTOR.services_by_name[name].methods
    assert methods
    channel = grpc.insecure_channel("127.0.0.1:1")  # never connected: no call is made
    try:
        client = stub(channel)
        for method in methods:
            assert callable(getattr(servicer, method.name)), method.full_name
            assert callable(getattr(client, method.name)), method.full_name
    finally:
        channel.close()


@pytest.mark.parametrize(
    ("service", "method", "client_streaming", "server_streaming"),
    [
        ("Dispatcher", "Session", False, True),
        ("Dispatcher", "Heartbeat", False, False),
        ("Dispatcher", "Assignments", False, True),
        ("Logs", "SubscribeLogs", False, True),
        ("LogBroker", "ListenSubscriptions", False, True),
        ("LogBroker", "PublishLogs", True, False),
        ("RaftTransport", "Stream", True, False),
    ],
)
def test_streaming_shapes(
    service: str, method: str, client_streaming: bool, server_streaming: bool
) -> None:
    found = [
        m
        for module, name in SERVICES
        if name == service
        for m in importlib.import_module(module.__name__.removesuffix("_grpc"))
        .DESCRIPTOR.services_by_name[name]
        .methods
        if m.name == method
    ]
    assert len(found) == 1
    assert (found[0].client_streaming, found[0].server_streaming) == (
        client_streaming,
        server_streaming,
    )


class FakeCA(ca_pb2_grpc.CAServicer):
    def GetRootCACertificate(
        self, request: ca_pb2.GetRootCACertificateRequest, context: grpc.ServicerContext
    ) -> ca_pb2.GetRootCACertificateResponse:
        return ca_pb2.GetRootCACertificateResponse(certificate=b"-----BEGIN CERTIFICATE-----")

    def GetUnlockKey(
        self, request: ca_pb2.GetUnlockKeyRequest, context: grpc.ServicerContext
    ) -> ca_pb2.GetUnlockKeyResponse:
        return ca_pb2.GetUnlockKeyResponse(version=3)


def test_generated_code_serves_a_real_call() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    ca_pb2_grpc.add_CAServicer_to_server(FakeCA(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ca_pb2_grpc.CAStub(channel)
            reply = stub.GetRootCACertificate(ca_pb2.GetRootCACertificateRequest(), timeout=10)
            assert reply.certificate.startswith(b"-----BEGIN")
            assert stub.GetUnlockKey(ca_pb2.GetUnlockKeyRequest(), timeout=10).version == 3
    finally:
        server.stop(grace=None)
