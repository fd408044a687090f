"""Networks through a real Control server: create, labels-only update, removal guards."""

from __future__ import annotations

import grpc

from shoal.v1 import control_pb2, objects_pb2, specs_pb2, types_pb2
from tests.unit.manager.controlapi.helpers import (
    Control,
    network_spec,
    refused,
    service_spec,
    task,
)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


async def create(control: Control, spec: specs_pb2.NetworkSpec) -> objects_pb2.Network:
    response = await control.stub.CreateNetwork(control_pb2.CreateNetworkRequest(spec=spec))
    network: objects_pb2.Network = response.network
    return network


async def test_create_defaults_to_overlay_and_round_trips(control: Control) -> None:
    created = await create(control, network_spec("backend", subnet="10.1.0.0/24"))

    assert created.spec.driver_config.name == "overlay"
    got = await control.stub.GetNetwork(control_pb2.GetNetworkRequest(network_id=created.id))
    assert got.network == created
    listed = await control.stub.ListNetworks(
        control_pb2.ListNetworksRequest(
            filters=control_pb2.ListNetworksRequest.Filters(name_prefixes=["back"])
        )
    )
    assert [n.id for n in listed.networks] == [created.id]


async def test_create_refusals(control: Control) -> None:
    await create(control, network_spec("a", subnet="10.1.0.0/16"))
    await refused(create(control, network_spec("a")), grpc.StatusCode.ALREADY_EXISTS, "'a'")
    await refused(
        create(control, network_spec("b", subnet="10.1.2.0/24")),
        INVALID,
        "spec.ipam.configs[0].subnet: 10.1.2.0/24 overlaps 10.1.0.0/16 of network 'a'",
    )
    bridge = network_spec("c")
    bridge.driver_config.name = "bridge"
    await refused(create(control, bridge), INVALID, "spec.driver_config.name", "'bridge'")
    ingress = network_spec("ingress")
    ingress.ingress = True
    await create(control, ingress)
    second = network_spec("ingress2")
    second.ingress = True
    await refused(create(control, second), grpc.StatusCode.ALREADY_EXISTS, "spec.ingress")


async def test_allocated_subnets_are_taken(control: Control) -> None:
    created = await create(control, network_spec("a"))
    allocated = control.get(objects_pb2.Network, created.id)
    allocated.ipam.configs.add(subnet="10.0.0.0/24")
    await control.store.update(lambda tx: tx.update(allocated))
    await refused(
        create(control, network_spec("b", subnet="10.0.0.128/25")), INVALID, "overlaps 10.0.0.0/24"
    )


async def test_only_labels_change(control: Control) -> None:
    created = await create(control, network_spec("a", subnet="10.2.0.0/24"))
    spec = specs_pb2.NetworkSpec()
    spec.CopyFrom(created.spec)
    spec.annotations.labels["owner"] = "me"

    updated = (
        await control.stub.UpdateNetwork(
            control_pb2.UpdateNetworkRequest(
                network_id=created.id, network_version=created.meta.version, spec=spec
            )
        )
    ).network
    assert updated.spec.annotations.labels == {"owner": "me"}

    spec.internal = True
    await refused(
        control.stub.UpdateNetwork(
            control_pb2.UpdateNetworkRequest(
                network_id=created.id, network_version=updated.meta.version, spec=spec
            )
        ),
        INVALID,
        "spec.internal: cannot change",
    )
    spec.internal = False
    spec.annotations.name = "renamed"
    await refused(
        control.stub.UpdateNetwork(
            control_pb2.UpdateNetworkRequest(
                network_id=created.id, network_version=updated.meta.version, spec=spec
            )
        ),
        INVALID,
        "spec.annotations.name: cannot change",
    )
    await refused(
        control.stub.UpdateNetwork(
            control_pb2.UpdateNetworkRequest(
                network_id=created.id, network_version=created.meta.version, spec=updated.spec
            )
        ),
        FAILED_PRECONDITION,
        "update out of sequence",
    )


async def test_removal_refused_while_a_service_or_running_task_uses_it(
    control: Control,
) -> None:
    network = await create(control, network_spec("a"))
    spec = service_spec("web")
    spec.task.networks.add(target=network.id)
    service = (
        await control.stub.CreateService(control_pb2.CreateServiceRequest(spec=spec))
    ).service
    remove = control_pb2.RemoveNetworkRequest(network_id=network.id)

    await refused(control.stub.RemoveNetwork(remove), FAILED_PRECONDITION, "service 'web'")

    # The service moves off the network, but a rollback would bring it back.
    updated = (
        await control.stub.UpdateService(
            control_pb2.UpdateServiceRequest(
                service_id=service.id,
                service_version=service.meta.version,
                spec=service_spec("web"),
            )
        )
    ).service
    await refused(control.stub.RemoveNetwork(remove), FAILED_PRECONDITION, "service 'web'")
    await control.stub.RemoveService(control_pb2.RemoveServiceRequest(service_id=updated.id))

    running = task(updated, state=types_pb2.RUNNING)
    running.networks.add().network.CopyFrom(network)
    await control.put(running)
    await refused(control.stub.RemoveNetwork(remove), FAILED_PRECONDITION, running.id)

    stopped = control.get(objects_pb2.Task, running.id)
    stopped.status.state = types_pb2.SHUTDOWN
    await control.store.update(lambda tx: tx.update(stopped))
    await control.stub.RemoveNetwork(remove)
    assert control.get(objects_pb2.Network, network.id) is None
