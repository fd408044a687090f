"""A task as the runtime's ContainerSpec: Docker/SwarmKit semantics, checked field by field.

`command` replaces the image's ENTRYPOINT (and with it the image's CMD), `args` replaces
CMD. Host-mode published ports become `-p` mappings on the runtime's bridge network. The
task's overlay networks become the container's first interfaces (eth0, ...) with the
addresses the managers allocated; the node's bridge comes after them as the way out, unless
every one of them is `--internal`. Fields the runtime cannot honour are refused with a
TaskSpecError naming them, so a task is REJECTED instead of running other than asked.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Any

from agent.errors import TaskSpecError
from common.naming import task_name
from runtime.container.cgroups import Limits
from runtime.container.spec import ContainerSpec, Mount, OverlayAttachment
from shoal.v1 import objects_pb2, specs_pb2, types_pb2

TASK_LABEL = "com.shoal.task.id"
TASK_NAME_LABEL = "com.shoal.task.name"
SERVICE_LABEL = "com.shoal.service.id"
SERVICE_NAME_LABEL = "com.shoal.service.name"
NODE_LABEL = "com.shoal.node.id"

DEFAULT_STOP_GRACE = 10.0  # seconds, as in Swarm
DEFAULT_TMPFS_MODE = 0o1777
PROTOCOLS = {types_pb2.PortConfig.TCP: "tcp", types_pb2.PortConfig.UDP: "udp"}
VNI_OPTION = "vni"  # where the managers put an overlay network's VXLAN id (driver_state)
OVERLAY_DRIVERS = ("", "overlay")


def container_name(task: objects_pb2.Task) -> str:
    """The task's name (common.naming), which its container takes."""
    return task_name(
        task.annotations.name,
        task.service_annotations.name,
        task.service_id,
        task.slot,
        task.node_id,
        task.id,
    )


def stop_grace(task: objects_pb2.Task) -> float:
    container = task.spec.container
    if container.HasField("stop_grace_period"):
        return container.stop_grace_period.ToTimedelta().total_seconds()
    return DEFAULT_STOP_GRACE


def published_ports(task: objects_pb2.Task) -> list[types_pb2.PortConfig]:
    """The task's host-mode ports with a published port (the ones this node opens)."""
    return [
        p
        for p in task.endpoint.ports
        if p.publish_mode == types_pb2.PortConfig.HOST and p.published_port
    ]


def _port(port: types_pb2.PortConfig) -> str:
    protocol = PROTOCOLS.get(port.protocol)
    if protocol is None:
        name = types_pb2.PortConfig.Protocol.Name(port.protocol)
        raise TaskSpecError(f"published port {port.published_port}/{name}: only tcp and udp")
    return f"{port.published_port}:{port.target_port}/{protocol}"


def _mount(mount: types_pb2.Mount) -> Mount:
    where = f"mount at {mount.target or '(no target)'}"
    if mount.type == types_pb2.Mount.BIND:
        if mount.bind_options.propagation != types_pb2.Mount.BindOptions.RPRIVATE:
            raise TaskSpecError(f"{where}: only rprivate bind propagation is supported")
        return Mount("bind", mount.target, mount.source, mount.readonly)
    if mount.type == types_pb2.Mount.VOLUME:
        if not mount.source:
            raise TaskSpecError(f"{where}: anonymous volumes are not supported, name the volume")
        driver = mount.volume_options.driver_config.name
        if driver not in ("", "local"):
            raise TaskSpecError(f"{where}: volume driver {driver!r} is not supported")
        return Mount("volume", mount.target, mount.source, mount.readonly)
    if mount.readonly:
        raise TaskSpecError(f"{where}: read-only tmpfs mounts are not supported")
    if mount.tmpfs_options.mode not in (0, DEFAULT_TMPFS_MODE):
        raise TaskSpecError(f"{where}: tmpfs mode {mount.tmpfs_options.mode:o} is not supported")
    return Mount("tmpfs", mount.target, tmpfs_size=mount.tmpfs_options.size_bytes)


def _stop_signal(requested: str, image_config: Mapping[str, Any]) -> str:
    """The signal as the runtime takes it ("SIGTERM" or a number): the task's, else the
    image's StopSignal, else SIGTERM; "TERM" and "sigterm" are accepted too."""
    text = requested or (image_config.get("config") or {}).get("StopSignal") or "SIGTERM"
    if text.isdigit():
        if 0 < int(text) < signal.NSIG:
            return text
    else:
        name = text.upper() if text.upper().startswith("SIG") else f"SIG{text.upper()}"
        if name in signal.Signals.__members__:
            return name
    raise TaskSpecError(f"invalid stop signal {text!r}")


def overlay_attachment(
    attachment: objects_pb2.NetworkAttachment, data_address: str
) -> OverlayAttachment:
    """One network attachment (a task's, or the node's own on the ingress network) as the
    runtime joins it; `data_address` is this node's address for overlay traffic (its VXLAN
    tunnel endpoint). TaskSpecError when it cannot be joined."""
    network = attachment.network
    name = network.spec.annotations.name or network.id
    if network.spec.driver_config.name not in OVERLAY_DRIVERS:
        raise TaskSpecError(
            f"network {name}: driver {network.spec.driver_config.name!r} is not supported"
        )
    vni = network.driver_state.options.get(VNI_OPTION, "")
    configs = network.ipam.configs
    if not (vni.isdigit() and attachment.addresses and len(configs) == 1):
        raise TaskSpecError(f"network {name} is not allocated for this task")
    if not data_address:
        raise TaskSpecError(f"network {name}: this node has no address for overlay traffic")
    return OverlayAttachment(
        network_id=network.id,
        vni=int(vni),
        subnet=configs[0].subnet,
        gateway=configs[0].gateway,
        address=attachment.addresses[0].split("/", 1)[0],
        vtep=data_address,
        name=name,
    )


def overlays(task: objects_pb2.Task, data_address: str) -> tuple[OverlayAttachment, ...]:
    """The task's overlay networks as the runtime joins them."""
    return tuple(overlay_attachment(a, data_address) for a in task.networks)


def _way_out(task: objects_pb2.Task) -> str:
    """The bridge, unless the task is on overlay networks only and all are internal."""
    networks = [a.network for a in task.networks]
    return "none" if networks and all(n.spec.internal for n in networks) else "bridge"


def _refuse_unsupported(container: specs_pb2.ContainerSpec) -> None:
    unsupported = {
        "groups": bool(container.groups),
        "read_only": container.read_only,
        "healthcheck": bool(container.healthcheck.test)
        and list(container.healthcheck.test) != ["NONE"],
        "hosts": bool(container.hosts),
        "dns_config": container.HasField("dns_config"),
        "secrets": bool(container.secrets),
        "configs": bool(container.configs),
    }
    named = [field for field, used in unsupported.items() if used]
    if named:
        raise TaskSpecError(f"not supported by this node's runtime yet: {', '.join(named)}")


def runtime_spec(
    task: objects_pb2.Task,
    node_id: str,
    image_config: Mapping[str, Any],
    data_address: str = "",
) -> ContainerSpec:
    """The runtime spec for `task` on node `node_id`; `image_config` is the image's OCI
    config (for its StopSignal), `data_address` the node's address for overlay traffic.
    Raises TaskSpecError (or the runtime's ContainerError on validation) naming what cannot
    be run."""
    if not task.spec.HasField("container"):
        raise TaskSpecError(f"task {task.id} has no container spec")
    container = task.spec.container
    if not container.image:
        raise TaskSpecError(f"task {task.id} names no image")
    _refuse_unsupported(container)
    limits = task.spec.resources.limits
    spec = ContainerSpec(
        image=container.image,
        name=container_name(task),
        entrypoint=tuple(container.command) if container.command else None,
        command=tuple(container.args),
        env=tuple(container.env),
        workdir=container.dir,
        user=container.user,
        hostname=container.hostname,
        labels={
            **container.labels,
            TASK_LABEL: task.id,
            TASK_NAME_LABEL: container_name(task),
            SERVICE_LABEL: task.service_id,
            SERVICE_NAME_LABEL: task.service_annotations.name,
            NODE_LABEL: node_id,
        },
        mounts=tuple(_mount(m) for m in container.mounts),
        limits=Limits(memory_bytes=limits.memory_bytes, nano_cpus=limits.nano_cpus),
        network=_way_out(task),
        ports=tuple(_port(p) for p in published_ports(task)),
        overlays=overlays(task, data_address),
        tty=container.tty,
        stdin_open=container.open_stdin,
        stop_signal=_stop_signal(container.stop_signal, image_config),
        stop_timeout=stop_grace(task),
    )
    spec.validate()
    return spec
