"""Networks: create, get, list, update (labels only), remove (refused while in use)."""

from __future__ import annotations

import ipaddress

from manager.controlapi.backend import Backend
from manager.controlapi.errors import FailedPrecondition, InvalidArgument, NameTaken, ObjectNotFound
from manager.controlapi.filters import matches
from manager.controlapi.immutable import check_only_labels_change
from manager.controlapi.requests import required_id, required_spec, required_version
from manager.controlapi.validation import check_network_spec
from manager.controlapi.validation.network import OVERLAY_DRIVER
from manager.store import ReadTx, VersionConflict, WriteTx, new_id
from shoal.v1 import control_pb2, objects_pb2, specs_pb2, types_pb2


def _get(tx: ReadTx, network_id: str) -> objects_pb2.Network:
    network = tx.get(objects_pb2.Network, network_id)
    if network is None:
        raise ObjectNotFound(f"network {network_id!r} not found")
    return network


async def create_network(
    backend: Backend, request: control_pb2.CreateNetworkRequest
) -> control_pb2.CreateNetworkResponse:
    required_spec(request)
    check_network_spec(request.spec)
    spec = specs_pb2.NetworkSpec()
    spec.CopyFrom(request.spec)
    if not spec.HasField("driver_config"):
        spec.driver_config.name = OVERLAY_DRIVER

    def create(tx: WriteTx) -> objects_pb2.Network:
        networks = tx.list(objects_pb2.Network)
        if spec.ingress:
            for other in networks:
                if other.spec.ingress:
                    raise NameTaken(
                        f"spec.ingress: the cluster already has an ingress network, "
                        f"{other.spec.annotations.name!r} ({other.id})"
                    )
        _check_subnets_free(spec, networks)
        return tx.create(objects_pb2.Network(id=new_id(), spec=spec))

    return control_pb2.CreateNetworkResponse(network=await backend.write_object(create))


def _subnets(ipam: types_pb2.IPAMOptions) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The subnets of an IPAM state; an empty one (not allocated yet) is none."""
    found = []
    for config in ipam.configs:
        try:
            found.append(ipaddress.ip_network(config.subnet, strict=False))
        except ValueError:
            continue
    return found


def _check_subnets_free(spec: specs_pb2.NetworkSpec, networks: list[objects_pb2.Network]) -> None:
    """A subnet asked for must not overlap one another network asked for or was given."""
    for number, config in enumerate(spec.ipam.configs):
        if not config.subnet:
            continue
        subnet = ipaddress.ip_network(config.subnet)
        for other in networks:
            for taken in (*_subnets(other.spec.ipam), *_subnets(other.ipam)):
                if taken.version == subnet.version and taken.overlaps(subnet):
                    raise InvalidArgument(
                        f"spec.ipam.configs[{number}].subnet",
                        f"{subnet} overlaps {taken} of network "
                        f"{other.spec.annotations.name!r} ({other.id})",
                    )


async def get_network(
    backend: Backend, request: control_pb2.GetNetworkRequest
) -> control_pb2.GetNetworkResponse:
    network_id = required_id("network_id", request.network_id)
    return control_pb2.GetNetworkResponse(network=backend.read(lambda tx: _get(tx, network_id)))


async def list_networks(
    backend: Backend, request: control_pb2.ListNetworksRequest
) -> control_pb2.ListNetworksResponse:
    filters = request.filters
    networks = backend.read(lambda tx: tx.list(objects_pb2.Network))
    return control_pb2.ListNetworksResponse(
        networks=[
            n
            for n in networks
            if matches(filters, n.id, (n.spec.annotations.name,), n.spec.annotations.labels)
        ]
    )


async def update_network(
    backend: Backend, request: control_pb2.UpdateNetworkRequest
) -> control_pb2.UpdateNetworkResponse:
    network_id = required_id("network_id", request.network_id)
    version = required_version("network_version", request.network_version)
    required_spec(request)

    def update(tx: WriteTx) -> objects_pb2.Network:
        network = _get(tx, network_id)
        if network.meta.version != version:
            raise VersionConflict("network", network_id, network.meta.version, version)
        check_only_labels_change("spec", network.spec, request.spec)
        network.spec.annotations.labels.clear()
        network.spec.annotations.labels.update(request.spec.annotations.labels)
        check_network_spec(network.spec)
        return tx.update(network)

    return control_pb2.UpdateNetworkResponse(network=await backend.write_object(update))


async def remove_network(
    backend: Backend, request: control_pb2.RemoveNetworkRequest
) -> control_pb2.RemoveNetworkResponse:
    """Refused while a service is attached to the network (in its spec or its previous
    spec, which a rollback would restore) or a task on it is not yet stopped."""
    network_id = required_id("network_id", request.network_id)

    def remove(tx: WriteTx) -> None:
        _get(tx, network_id)
        for service in tx.list(objects_pb2.Service):
            specs = (service.spec, service.previous_spec)
            if any(a.target == network_id for spec in specs for a in spec.task.networks):
                raise FailedPrecondition(
                    f"network {network_id!r} is in use by service "
                    f"{service.spec.annotations.name!r} ({service.id})"
                )
        for task in tx.list(objects_pb2.Task):
            if task.status.state <= types_pb2.RUNNING and any(
                a.network.id == network_id for a in task.networks
            ):
                raise FailedPrecondition(
                    f"network {network_id!r} is in use by task {task.id!r}, which has not "
                    "stopped yet"
                )
        tx.delete(objects_pb2.Network, network_id)

    await backend.write(remove)
    return control_pb2.RemoveNetworkResponse()
