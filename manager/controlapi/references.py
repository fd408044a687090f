"""Checks of a service spec against the store: the networks, secrets and configs it names
exist (network names become ids), and its published ports are not another service's."""

from __future__ import annotations

from common.errors import shown
from manager.controlapi.errors import FailedPrecondition, InvalidArgument, ObjectNotFound
from manager.controlapi.validation.service import port_name
from manager.store import ReadTx
from shoal.v1 import objects_pb2, specs_pb2, types_pb2


def reads_other_objects(spec: specs_pb2.ServiceSpec) -> bool:
    """Whether checking `spec` reads other objects (the networks, secrets and configs it
    names; the services publishing its ports): such a write must not interleave with other
    Control writes until it commits, or a check could be undone before then."""
    container = spec.task.container
    return bool(
        spec.networks
        or spec.task.networks
        or container.secrets
        or container.configs
        or any(port.published_port for port in spec.endpoint.ports)
    )


def resolve_service_references(tx: ReadTx, spec: specs_pb2.ServiceSpec, field: str) -> None:
    """Move deprecated spec.networks into task.networks, turn network names into ids, and
    check every referenced network, secret and config exists. Changes `spec` in place."""
    if spec.networks:
        spec.task.networks.extend(spec.networks)
        del spec.networks[:]
    attached: dict[str, int] = {}
    for number, attachment in enumerate(spec.task.networks):
        path = f"{field}.task.networks[{number}].target"
        network = tx.get(objects_pb2.Network, attachment.target) or tx.get_by_name(
            objects_pb2.Network, attachment.target
        )
        if network is None:
            raise ObjectNotFound(f"{path}: no network {shown(attachment.target)}")
        if network.spec.ingress:
            raise InvalidArgument(
                path,
                f"{network.spec.annotations.name!r} is the ingress network: services join it "
                "through published ports, not by attaching to it",
            )
        if network.pending_delete:
            raise FailedPrecondition(f"{path}: network {network.id!r} is being removed")
        if network.id in attached:
            raise InvalidArgument(
                path,
                f"network {network.id!r} is also attached by "
                f"{field}.task.networks[{attached[network.id]}]",
            )
        attached[network.id] = number
        attachment.target = network.id
    container = spec.task.container
    for number, secret in enumerate(container.secrets):
        if tx.get(objects_pb2.Secret, secret.secret_id) is None:
            raise ObjectNotFound(
                f"{field}.task.container.secrets[{number}].secret_id: "
                f"no secret {shown(secret.secret_id)}"
            )
    for number, config in enumerate(container.configs):
        if tx.get(objects_pb2.Config, config.config_id) is None:
            raise ObjectNotFound(
                f"{field}.task.container.configs[{number}].config_id: "
                f"no config {shown(config.config_id)}"
            )


def check_published_ports(
    tx: ReadTx, spec: specs_pb2.ServiceSpec, field: str, service_id: str = ""
) -> None:
    """Refuse a published port (number and protocol) that another service publishes, as
    asked or as allocated. Two HOST-mode ports may share a number: the scheduler keeps
    their tasks on different nodes."""
    wanted: dict[tuple[int, int], tuple[int, types_pb2.PortConfig]] = {
        (port.published_port, port.protocol): (number, port)
        for number, port in enumerate(spec.endpoint.ports)
        if port.published_port
    }
    if not wanted:
        return
    for other in tx.list(objects_pb2.Service):
        if other.id == service_id:
            continue
        for port in (*other.spec.endpoint.ports, *other.endpoint.ports):
            hit = wanted.get((port.published_port, port.protocol))
            if hit is None:
                continue
            number, mine = hit
            both_host = mine.publish_mode == port.publish_mode == types_pb2.PortConfig.HOST
            if not both_host:
                raise InvalidArgument(
                    f"{field}.endpoint.ports[{number}].published_port",
                    f"port {port_name(mine)} is already published by service "
                    f"{other.spec.annotations.name!r} ({other.id})",
                )
