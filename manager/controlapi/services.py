"""Services: create, get, list, update (or roll back), remove."""

from __future__ import annotations

from manager.controlapi.backend import Backend
from manager.controlapi.defaults import with_defaults
from manager.controlapi.errors import FailedPrecondition, InvalidArgument, ObjectNotFound
from manager.controlapi.filters import matches
from manager.controlapi.references import (
    check_published_ports,
    reads_other_objects,
    resolve_service_references,
)
from manager.controlapi.requests import required_id, required_spec, required_version
from manager.controlapi.validation import check_service_spec
from manager.controlapi.validation.fields import check_enum
from manager.controlapi.validation.service import mode_of
from manager.store import ReadTx, VersionConflict, WriteTx, new_id
from shoal.v1 import control_pb2, objects_pb2, specs_pb2, types_pb2

ROLLBACK_MESSAGE = "manually requested rollback"


def _get(tx: ReadTx, service_id: str) -> objects_pb2.Service:
    service = tx.get(objects_pb2.Service, service_id)
    if service is None:
        raise ObjectNotFound(f"service {service_id!r} not found")
    return service


async def create_service(
    backend: Backend, request: control_pb2.CreateServiceRequest
) -> control_pb2.CreateServiceResponse:
    required_spec(request)
    check_service_spec(request.spec)
    spec = specs_pb2.ServiceSpec()
    spec.CopyFrom(request.spec)

    def create(tx: WriteTx) -> objects_pb2.Service:
        resolve_service_references(tx, spec, "spec")
        check_published_ports(tx, spec, "spec")
        existing = tx.get_by_name(objects_pb2.Service, spec.annotations.name)
        if existing is not None and existing.pending_delete:
            raise FailedPrecondition(
                f"service name {spec.annotations.name!r} is still held by service "
                f"{existing.id!r}, which is being removed; retry when it is gone"
            )
        service = objects_pb2.Service(id=new_id(), spec=spec)
        service.spec_version.index = backend.next_index()
        return tx.create(service)

    created = await backend.write_object(create, exclusive=reads_other_objects(spec))
    return control_pb2.CreateServiceResponse(service=created)


async def get_service(
    backend: Backend, request: control_pb2.GetServiceRequest
) -> control_pb2.GetServiceResponse:
    service_id = required_id("service_id", request.service_id)
    service = backend.read(lambda tx: _get(tx, service_id))
    if request.insert_defaults:
        service.spec.CopyFrom(with_defaults(service.spec))
        if service.HasField("previous_spec"):
            service.previous_spec.CopyFrom(with_defaults(service.previous_spec))
    return control_pb2.GetServiceResponse(service=service)


async def list_services(
    backend: Backend, request: control_pb2.ListServicesRequest
) -> control_pb2.ListServicesResponse:
    filters = request.filters
    services = backend.read(lambda tx: tx.list(objects_pb2.Service))
    return control_pb2.ListServicesResponse(
        services=[
            s
            for s in services
            if matches(filters, s.id, (s.spec.annotations.name,), s.spec.annotations.labels)
        ]
    )


async def update_service(
    backend: Backend, request: control_pb2.UpdateServiceRequest
) -> control_pb2.UpdateServiceResponse:
    service_id = required_id("service_id", request.service_id)
    version = required_version("service_version", request.service_version)
    check_enum("rollback", request.rollback, control_pb2.UpdateServiceRequest.Rollback.DESCRIPTOR)
    rollback = request.rollback == control_pb2.UpdateServiceRequest.PREVIOUS
    spec = specs_pb2.ServiceSpec()
    if not rollback:
        required_spec(request)
        check_service_spec(request.spec)
        spec.CopyFrom(request.spec)

    def update(tx: WriteTx) -> objects_pb2.Service:
        service = _get(tx, service_id)
        if service.meta.version != version:
            raise VersionConflict("service", service_id, service.meta.version, version)
        if service.pending_delete:
            raise FailedPrecondition(f"service {service_id!r} is being removed")
        if rollback:
            _roll_back(tx, backend, service)
        else:
            _change_spec(tx, backend, service, spec)
        return tx.update(service)

    exclusive = rollback or reads_other_objects(spec)
    updated = await backend.write_object(update, exclusive=exclusive)
    return control_pb2.UpdateServiceResponse(service=updated)


def _change_spec(
    tx: WriteTx, backend: Backend, service: objects_pb2.Service, spec: specs_pb2.ServiceSpec
) -> None:
    old_mode, new_mode = mode_of(service.spec), mode_of(spec)
    if old_mode != new_mode:
        raise InvalidArgument(
            "spec.mode",
            f"a service's mode cannot change ({old_mode} -> {new_mode}): "
            "remove the service and create it again",
        )
    resolve_service_references(tx, spec, "spec")
    check_published_ports(tx, spec, "spec", service.id)
    service.previous_spec.CopyFrom(service.spec)
    service.previous_spec_version.CopyFrom(service.spec_version)
    service.spec.CopyFrom(spec)
    service.spec_version.index = backend.next_index()
    service.ClearField("update_status")


def _roll_back(tx: WriteTx, backend: Backend, service: objects_pb2.Service) -> None:
    """Swap spec and previous_spec (and their versions), as SwarmKit does: rolling back
    twice returns to where it started."""
    if not service.HasField("previous_spec"):
        raise FailedPrecondition(
            f"service {service.id!r} has no previous spec to roll back to (it was never updated)"
        )
    target = specs_pb2.ServiceSpec()
    target.CopyFrom(service.previous_spec)
    # The networks, secrets or configs of the old spec may have gone since.
    resolve_service_references(tx, target, "previous_spec")
    check_published_ports(tx, target, "previous_spec", service.id)
    target_version = types_pb2.Version()
    target_version.CopyFrom(service.previous_spec_version)
    service.previous_spec.CopyFrom(service.spec)
    service.previous_spec_version.CopyFrom(service.spec_version)
    service.spec.CopyFrom(target)
    service.spec_version.CopyFrom(target_version)
    service.update_status.CopyFrom(
        types_pb2.UpdateStatus(
            state=types_pb2.UpdateStatus.ROLLBACK_STARTED,
            started_at=backend.now(),
            message=ROLLBACK_MESSAGE,
        )
    )


async def remove_service(
    backend: Backend, request: control_pb2.RemoveServiceRequest
) -> control_pb2.RemoveServiceResponse:
    """A service without tasks goes at once. One with tasks is marked pending_delete: the
    orchestrators shut its tasks down and the task reaper deletes it when they are gone."""
    service_id = required_id("service_id", request.service_id)

    def remove(tx: WriteTx) -> None:
        service = _get(tx, service_id)
        if not tx.find(objects_pb2.Task, "service", service_id):
            tx.delete(objects_pb2.Service, service_id)
        elif not service.pending_delete:
            service.pending_delete = True
            tx.update(service)

    await backend.write(remove)
    return control_pb2.RemoveServiceResponse()
