"""A service spec: name, mode, task template, update and rollback policies, endpoint."""

from __future__ import annotations

from collections.abc import Sequence

from manager.controlapi.errors import InvalidArgument
from manager.controlapi.validation.fields import (
    check_count,
    check_dns_label,
    check_enum,
    check_labels,
    check_ratio,
    check_spec_size,
    check_text,
    duration_nanos,
)
from manager.controlapi.validation.task import check_network_attachments, check_task_spec
from shoal.v1 import specs_pb2, types_pb2

# A service and its previous spec must fit in one raft entry, with room to spare.
MAX_SERVICE_SPEC_BYTES = 256 * 1024
# Tasks one service may ask for (replicas, or a job's concurrency and completions).
MAX_REPLICAS = 100_000
MAX_PORTS = 1024
MODES = ("replicated_service", "global_service", "replicated_job", "global_job")
GLOBAL_MODES = ("global_service", "global_job")


def check_service_spec(spec: specs_pb2.ServiceSpec, field: str = "spec") -> None:
    check_spec_size(field, spec, MAX_SERVICE_SPEC_BYTES)
    check_dns_label(f"{field}.annotations.name", spec.annotations.name)
    check_labels(f"{field}.annotations.labels", spec.annotations.labels)
    if not spec.HasField("task"):
        raise InvalidArgument(f"{field}.task", "must be set (the template of the tasks)")
    check_task_spec(f"{field}.task", spec.task)
    _check_mode(field, spec)
    if spec.HasField("update"):
        check_update_config(f"{field}.update", spec.update, rollback=False)
    if spec.HasField("rollback"):
        check_update_config(f"{field}.rollback", spec.rollback, rollback=True)
    check_network_attachments(f"{field}.networks", spec.networks)
    if spec.networks and spec.task.networks:
        raise InvalidArgument(
            f"{field}.networks", f"set only {field}.task.networks (this field is deprecated)"
        )
    if spec.HasField("endpoint"):
        check_endpoint(f"{field}.endpoint", spec.endpoint)


def mode_of(spec: specs_pb2.ServiceSpec) -> str | None:
    return spec.WhichOneof("mode")


def _check_mode(field: str, spec: specs_pb2.ServiceSpec) -> None:
    mode = mode_of(spec)
    if mode is None:
        raise InvalidArgument(f"{field}.mode", f"must be set: one of {', '.join(MODES)}")
    if mode == "replicated_service":
        check_count(
            f"{field}.replicated_service.replicas",
            spec.replicated_service.replicas,
            MAX_REPLICAS,
        )
    elif mode == "replicated_job":
        job = spec.replicated_job
        check_count(f"{field}.replicated_job.max_concurrent", job.max_concurrent, MAX_REPLICAS)
        check_count(
            f"{field}.replicated_job.total_completions", job.total_completions, MAX_REPLICAS
        )
    if mode in GLOBAL_MODES and spec.task.placement.max_replicas:
        raise InvalidArgument(
            f"{field}.task.placement.max_replicas",
            f"applies to replicated modes only, not {mode} (one task per node)",
        )


def check_update_config(field: str, config: types_pb2.UpdateConfig, rollback: bool) -> None:
    check_count(f"{field}.parallelism", config.parallelism)
    if config.HasField("delay"):
        duration_nanos(f"{field}.delay", config.delay)
    if config.HasField("monitor"):
        duration_nanos(f"{field}.monitor", config.monitor)
    check_enum(
        f"{field}.failure_action",
        config.failure_action,
        types_pb2.UpdateConfig.FailureAction.DESCRIPTOR,
    )
    if rollback and config.failure_action == types_pb2.UpdateConfig.ROLLBACK:
        raise InvalidArgument(
            f"{field}.failure_action", "a rollback cannot roll back: use PAUSE or CONTINUE"
        )
    check_ratio(f"{field}.max_failure_ratio", config.max_failure_ratio)
    check_enum(f"{field}.order", config.order, types_pb2.UpdateConfig.Order.DESCRIPTOR)


def check_endpoint(field: str, endpoint: types_pb2.EndpointSpec) -> None:
    check_enum(f"{field}.mode", endpoint.mode, types_pb2.EndpointSpec.ResolutionMode.DESCRIPTOR)
    check_ports(f"{field}.ports", endpoint.ports)
    for number, port in enumerate(endpoint.ports):
        if (
            endpoint.mode == types_pb2.EndpointSpec.DNSRR
            and port.publish_mode == types_pb2.PortConfig.INGRESS
        ):
            raise InvalidArgument(
                f"{field}.ports[{number}].publish_mode",
                "INGRESS ports need the VIP endpoint mode (DNSRR has no virtual IP)",
            )


def check_ports(field: str, ports: Sequence[types_pb2.PortConfig]) -> None:
    if len(ports) > MAX_PORTS:
        raise InvalidArgument(field, f"{len(ports)} ports, more than {MAX_PORTS}")
    published: dict[tuple[int, int], int] = {}
    for number, port in enumerate(ports):
        path = f"{field}[{number}]"
        check_text(f"{path}.name", port.name, 255)
        check_enum(f"{path}.protocol", port.protocol, types_pb2.PortConfig.Protocol.DESCRIPTOR)
        check_enum(
            f"{path}.publish_mode",
            port.publish_mode,
            types_pb2.PortConfig.PublishMode.DESCRIPTOR,
        )
        if not 1 <= port.target_port <= 65535:
            raise InvalidArgument(f"{path}.target_port", f"{port.target_port} is not in 1-65535")
        if port.published_port > 65535:
            raise InvalidArgument(
                f"{path}.published_port",
                f"{port.published_port} is not in 1-65535 (or 0: chosen by the manager)",
            )
        if not port.published_port:
            continue
        key = (port.published_port, port.protocol)
        if key in published:
            raise InvalidArgument(
                f"{path}.published_port",
                f"duplicate published port {port_name(port)} (also {field}[{published[key]}])",
            )
        published[key] = number


def port_name(port: types_pb2.PortConfig) -> str:
    """ "8080/tcp", as users write published ports."""
    protocol = types_pb2.PortConfig.Protocol.Name(port.protocol).lower()
    return f"{port.published_port}/{protocol}"
