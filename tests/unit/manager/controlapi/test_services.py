"""Services through a real Control server: create/get/list/update/rollback/remove."""

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


async def create(control: Control, spec: specs_pb2.ServiceSpec) -> objects_pb2.Service:
    response = await control.stub.CreateService(control_pb2.CreateServiceRequest(spec=spec))
    service: objects_pb2.Service = response.service
    return service


async def update(
    control: Control, service: objects_pb2.Service, spec: specs_pb2.ServiceSpec
) -> objects_pb2.Service:
    response = await control.stub.UpdateService(
        control_pb2.UpdateServiceRequest(
            service_id=service.id, service_version=service.meta.version, spec=spec
        )
    )
    updated: objects_pb2.Service = response.service
    return updated


async def rollback(control: Control, service: objects_pb2.Service) -> objects_pb2.Service:
    response = await control.stub.UpdateService(
        control_pb2.UpdateServiceRequest(
            service_id=service.id,
            service_version=service.meta.version,
            rollback=control_pb2.UpdateServiceRequest.PREVIOUS,
        )
    )
    rolled: objects_pb2.Service = response.service
    return rolled


async def test_create_get_list_round_trip(control: Control) -> None:
    spec = service_spec("web", replicas=3)
    created = await create(control, spec)

    assert created.id and created.spec == spec
    assert created.meta.version == control.store.index
    # With a LocalProposer the transaction commits at the index it expected.
    assert created.spec_version.index == created.meta.version
    assert created.meta.created_at.seconds == int(control.clock.now)
    got = await control.stub.GetService(control_pb2.GetServiceRequest(service_id=created.id))
    assert got.service == created
    listed = await control.stub.ListServices(control_pb2.ListServicesRequest())
    assert list(listed.services) == [created]


async def test_duplicate_name_is_already_exists(control: Control) -> None:
    first = await create(control, service_spec("web"))
    await refused(
        create(control, service_spec("web")), grpc.StatusCode.ALREADY_EXISTS, "'web'", first.id
    )
    assert control.store.view(lambda tx: tx.count(objects_pb2.Service)) == 1


async def test_invalid_spec_is_refused_and_nothing_is_written(control: Control) -> None:
    spec = service_spec()
    spec.task.container.image = "UPPER"
    index = control.store.index
    await refused(
        create(control, spec), INVALID, "spec.task.container.image: invalid reference 'UPPER'"
    )
    assert control.store.index == index


async def test_missing_spec_and_ids_are_invalid(control: Control) -> None:
    await refused(control.stub.CreateService(control_pb2.CreateServiceRequest()), INVALID, "spec")
    await refused(control.stub.GetService(control_pb2.GetServiceRequest()), INVALID, "service_id")
    await refused(
        control.stub.GetService(control_pb2.GetServiceRequest(service_id="x" * 100_000)),
        INVALID,
        "service_id: is 100000 characters",
    )
    await refused(
        control.stub.GetService(control_pb2.GetServiceRequest(service_id="nope")),
        grpc.StatusCode.NOT_FOUND,
        "service 'nope' not found",
    )


async def test_update_keeps_previous_spec_and_bumps_spec_version(control: Control) -> None:
    created = await create(control, service_spec("web", replicas=1))
    new_spec = service_spec("web", replicas=5)
    updated = await update(control, created, new_spec)

    assert updated.spec == new_spec
    assert updated.previous_spec == created.spec
    assert updated.previous_spec_version == created.spec_version
    assert updated.spec_version.index > created.spec_version.index
    assert updated.meta.version > created.meta.version
    assert control.get(objects_pb2.Service, created.id) == updated


async def test_stale_version_is_update_out_of_sequence(control: Control) -> None:
    created = await create(control, service_spec("web", replicas=1))
    updated = await update(control, created, service_spec("web", replicas=2))
    details = await refused(
        update(control, created, service_spec("web", replicas=9)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "update out of sequence",
    )
    assert str(created.meta.version) in details
    assert control.get(objects_pb2.Service, created.id) == updated


async def test_update_requires_version_and_known_id(control: Control) -> None:
    created = await create(control, service_spec())
    await refused(
        control.stub.UpdateService(
            control_pb2.UpdateServiceRequest(service_id=created.id, spec=service_spec())
        ),
        INVALID,
        "service_version: must be set",
    )
    await refused(
        control.stub.UpdateService(
            control_pb2.UpdateServiceRequest(
                service_id="missing", service_version=1, spec=service_spec()
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        "service 'missing' not found",
    )
    await refused(
        control.stub.UpdateService(
            control_pb2.UpdateServiceRequest(
                service_id=created.id,
                service_version=created.meta.version,
                rollback=7,  # type: ignore[arg-type]
            )
        ),
        INVALID,
        "rollback: unknown value 7",
    )


async def test_mode_cannot_change(control: Control) -> None:
    created = await create(control, service_spec())
    spec = service_spec()
    spec.global_service.SetInParent()
    await refused(
        update(control, created, spec),
        INVALID,
        "spec.mode: a service's mode cannot change (replicated_service -> global_service)",
    )


async def test_rollback_swaps_spec_and_previous_spec(control: Control) -> None:
    created = await create(control, service_spec("web", replicas=1))
    updated = await update(control, created, service_spec("web", replicas=4))
    control.clock.now += 60

    rolled = await rollback(control, updated)

    assert rolled.spec == created.spec
    assert rolled.spec_version == created.spec_version
    assert rolled.previous_spec == updated.spec
    assert rolled.previous_spec_version == updated.spec_version
    assert rolled.update_status.state == types_pb2.UpdateStatus.ROLLBACK_STARTED
    assert rolled.update_status.started_at.seconds == int(control.clock.now)
    assert rolled.update_status.message == "manually requested rollback"
    again = await rollback(control, rolled)
    assert again.spec == updated.spec


async def test_rollback_without_previous_spec_is_refused(control: Control) -> None:
    created = await create(control, service_spec())
    await refused(
        rollback(control, created), grpc.StatusCode.FAILED_PRECONDITION, "no previous spec"
    )
    assert control.get(objects_pb2.Service, created.id) == created


async def test_remove_without_tasks_deletes(control: Control) -> None:
    created = await create(control, service_spec())
    await control.stub.RemoveService(control_pb2.RemoveServiceRequest(service_id=created.id))
    assert control.get(objects_pb2.Service, created.id) is None
    await refused(
        control.stub.RemoveService(control_pb2.RemoveServiceRequest(service_id=created.id)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_remove_with_tasks_marks_pending_delete(control: Control) -> None:
    created = await create(control, service_spec("web"))
    await control.put(task(created))

    await control.stub.RemoveService(control_pb2.RemoveServiceRequest(service_id=created.id))

    marked = control.get(objects_pb2.Service, created.id)
    assert marked.pending_delete
    await refused(
        update(control, marked, service_spec("web", replicas=2)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "being removed",
    )
    await refused(
        create(control, service_spec("web")), grpc.StatusCode.FAILED_PRECONDITION, "being removed"
    )
    # Removing again changes nothing.
    index = control.store.index
    await control.stub.RemoveService(control_pb2.RemoveServiceRequest(service_id=created.id))
    assert control.store.index == index


async def test_networks_are_resolved_to_ids_and_deprecated_field_moved(control: Control) -> None:
    network = (
        await control.stub.CreateNetwork(control_pb2.CreateNetworkRequest(spec=network_spec()))
    ).network
    spec = service_spec()
    spec.networks.add(target="backend", aliases=["api"])

    created = await create(control, spec)

    assert not created.spec.networks
    assert [(a.target, list(a.aliases)) for a in created.spec.task.networks] == [
        (network.id, ["api"])
    ]


async def test_unknown_references_are_not_found(control: Control) -> None:
    spec = service_spec()
    spec.task.networks.add(target="nowhere")
    await refused(
        create(control, spec),
        grpc.StatusCode.NOT_FOUND,
        "spec.task.networks[0].target: no network 'nowhere'",
    )
    spec = service_spec()
    spec.task.container.secrets.add(secret_id="s1", file=specs_pb2.FileTarget(name="pw"))
    await refused(
        create(control, spec),
        grpc.StatusCode.NOT_FOUND,
        "spec.task.container.secrets[0].secret_id: no secret 's1'",
    )
    spec = service_spec()
    spec.task.container.configs.add(config_id="c1", file=specs_pb2.FileTarget(name="/etc/c"))
    await refused(
        create(control, spec),
        grpc.StatusCode.NOT_FOUND,
        "spec.task.container.configs[0].config_id: no config 'c1'",
    )


async def test_ingress_network_cannot_be_attached(control: Control) -> None:
    ingress = network_spec("ingress")
    ingress.ingress = True
    await control.stub.CreateNetwork(control_pb2.CreateNetworkRequest(spec=ingress))
    spec = service_spec()
    spec.task.networks.add(target="ingress")
    await refused(create(control, spec), INVALID, "spec.task.networks[0].target", "ingress")


async def test_same_network_by_name_and_id_is_a_duplicate(control: Control) -> None:
    network = (
        await control.stub.CreateNetwork(control_pb2.CreateNetworkRequest(spec=network_spec()))
    ).network
    spec = service_spec()
    spec.task.networks.add(target="backend")
    spec.task.networks.add(target=network.id)
    await refused(create(control, spec), INVALID, "spec.task.networks[1].target", "also attached")


def with_port(
    spec: specs_pb2.ServiceSpec,
    published: int,
    mode: types_pb2.PortConfig.PublishMode.ValueType = types_pb2.PortConfig.INGRESS,
) -> specs_pb2.ServiceSpec:
    spec.endpoint.ports.add(target_port=80, published_port=published, publish_mode=mode)
    return spec


async def test_published_port_of_another_service_is_refused(control: Control) -> None:
    first = await create(control, with_port(service_spec("a"), 8080))
    await refused(
        create(control, with_port(service_spec("b"), 8080)),
        INVALID,
        "spec.endpoint.ports[0].published_port: port 8080/tcp is already published by service "
        f"'a' ({first.id})",
    )
    # Updating the service that holds the port keeps it.
    await update(control, first, with_port(service_spec("a", replicas=2), 8080))


async def test_allocated_ports_count_as_published(control: Control) -> None:
    first = await create(control, service_spec("a"))
    allocated = control.get(objects_pb2.Service, first.id)
    allocated.endpoint.ports.add(target_port=80, published_port=30000)
    await control.store.update(lambda tx: tx.update(allocated))
    await refused(create(control, with_port(service_spec("b"), 30000)), INVALID, "30000/tcp")


async def test_host_mode_ports_may_share_a_number(control: Control) -> None:
    host = types_pb2.PortConfig.HOST
    await create(control, with_port(service_spec("a"), 9000, host))
    await create(control, with_port(service_spec("b"), 9000, host))
    await refused(create(control, with_port(service_spec("c"), 9000)), INVALID, "9000/tcp")


async def test_get_with_insert_defaults(control: Control) -> None:
    created = await create(control, service_spec())
    plain = await control.stub.GetService(control_pb2.GetServiceRequest(service_id=created.id))
    assert not plain.service.spec.HasField("update")
    full = (
        await control.stub.GetService(
            control_pb2.GetServiceRequest(service_id=created.id, insert_defaults=True)
        )
    ).service.spec
    assert full.update.parallelism == 1
    assert full.update.monitor.seconds == 5
    assert full.update.failure_action == types_pb2.UpdateConfig.PAUSE
    assert full.rollback.parallelism == 1
    assert full.task.restart.delay.seconds == 5
    assert full.task.restart.condition == types_pb2.RestartPolicy.ANY
    assert full.task.container.stop_grace_period.seconds == 10
    assert full.HasField("endpoint") and full.endpoint.mode == types_pb2.EndpointSpec.VIP
    # What the user set stays.
    assert full.replicated_service.replicas == created.spec.replicated_service.replicas


async def test_list_filters(control: Control) -> None:
    web = service_spec("web")
    web.annotations.labels.update({"tier": "front", "team": "a"})
    api = service_spec("api")
    api.annotations.labels.update({"tier": "back"})
    worker = service_spec("web-worker")
    created = {
        s.spec.annotations.name: s for s in [await create(control, x) for x in (web, api, worker)]
    }

    async def names(**filters: object) -> set[str]:
        request = control_pb2.ListServicesRequest(
            filters=control_pb2.ListServicesRequest.Filters(**filters)  # type: ignore[arg-type]
        )
        response = await control.stub.ListServices(request)
        return {s.spec.annotations.name for s in response.services}

    assert await names() == {"web", "api", "web-worker"}
    assert await names(names=["web", "api"]) == {"web", "api"}
    assert await names(name_prefixes=["web"]) == {"web", "web-worker"}
    assert await names(id_prefixes=[created["api"].id[:10]]) == {"api"}
    assert await names(labels={"tier": ""}) == {"web", "api"}
    assert await names(labels={"tier": "front"}) == {"web"}
    assert await names(labels={"tier": "front", "team": "b"}) == set()
    assert await names(name_prefixes=["web"], labels={"tier": ""}) == {"web"}
    assert await names(names=["nope"]) == set()
