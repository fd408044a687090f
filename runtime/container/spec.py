"""What a user asks of a container, validated, and what the engine resolves it to."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from runtime.container.cgroups import Limits
from runtime.errors import ContainerError

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
ENV_RE = re.compile(r"^[^=\s]+=")
NETWORK_MODES = ("bridge", "host", "none")
MOUNT_TYPES = ("bind", "volume", "tmpfs")


@dataclass(frozen=True)
class Mount:
    """A bind, volume or tmpfs mount asked for a container."""

    type: str  # bind | volume | tmpfs
    target: str
    source: str = ""  # host path (bind) or volume name (volume)
    readonly: bool = False
    tmpfs_size: int = 0  # bytes, 0 = kernel default

    def validate(self) -> None:
        if self.type not in MOUNT_TYPES:
            raise ContainerError(
                f"mount type must be one of {', '.join(MOUNT_TYPES)}, not {self.type!r}"
            )
        if not self.target.startswith("/") or ".." in self.target.split("/"):
            raise ContainerError(
                f"mount target must be an absolute path without '..': {self.target!r}"
            )
        if self.type == "bind" and not self.source.startswith("/"):
            raise ContainerError(
                f"bind mount source must be an absolute host path: {self.source!r}"
            )
        if self.type == "volume" and not NAME_RE.match(self.source):
            raise ContainerError(f"invalid volume name {self.source!r}")


MAX_VNI = (1 << 24) - 1


def interface_name(index: int) -> str:
    """A container's interfaces: one per overlay, in the spec's order, then the bridge's."""
    return f"eth{index}"


@dataclass(frozen=True)
class OverlayAttachment:
    """A container's place on an overlay network, as the cluster allocated it: the
    network's id, VNI, subnet and gateway, the container's address, and this node's own
    address (its VXLAN tunnel endpoint)."""

    network_id: str
    vni: int
    subnet: str  # CIDR
    gateway: str
    address: str
    vtep: str
    name: str = ""  # the network's name, for inspect

    def validate(self) -> None:
        if not NAME_RE.match(self.network_id):
            raise ContainerError(f"invalid overlay network id {self.network_id!r}")
        if not 1 <= self.vni <= MAX_VNI:
            raise ContainerError(f"overlay {self.network_id}: VNI {self.vni} is out of range")
        try:
            subnet = ipaddress.IPv4Network(self.subnet)
            gateway = ipaddress.IPv4Address(self.gateway)
            address = ipaddress.IPv4Address(self.address)
            ipaddress.IPv4Address(self.vtep)
        except ValueError as exc:
            raise ContainerError(f"overlay {self.network_id}: {exc}") from None
        if gateway not in subnet or address not in subnet or address == gateway:
            raise ContainerError(
                f"overlay {self.network_id}: {address} (gateway {gateway}) does not fit "
                f"subnet {subnet}"
            )


@dataclass(frozen=True)
class ContainerSpec:
    """What a user asks of a container (the image's config fills in the rest)."""

    image: str
    name: str = ""
    command: tuple[str, ...] = ()  # overrides the image's Cmd
    entrypoint: tuple[str, ...] | None = None  # overrides the image's Entrypoint when set
    env: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    limits: Limits = field(default_factory=Limits)
    network: str = "bridge"
    ports: tuple[str, ...] = ()  # "[ip:]host:container[/proto]"
    # Overlay networks, as eth0, eth1, ... in this order; the bridge (the way out) after them.
    overlays: tuple[OverlayAttachment, ...] = ()
    # Attachable overlay networks of the node's cluster (names or ids) to join at each start
    # through the node's swarmd (`shoal run --network NAME`); they come before `overlays`.
    cluster_networks: tuple[str, ...] = ()
    tty: bool = False
    stdin_open: bool = False
    stop_signal: str = "SIGTERM"
    stop_timeout: float = 10.0
    auto_remove: bool = False

    def validate(self) -> None:
        if self.name and not NAME_RE.match(self.name):
            raise ContainerError(
                f"invalid container name {self.name!r}: use letters, digits, '_', '.', '-'"
            )
        for item in self.env:
            if not ENV_RE.match(item):
                raise ContainerError(f"invalid environment variable {item!r}: expected NAME=value")
        if self.workdir and not self.workdir.startswith("/"):
            raise ContainerError(f"working directory must be absolute: {self.workdir!r}")
        if self.network not in NETWORK_MODES:
            raise ContainerError(
                f"network must be one of {', '.join(NETWORK_MODES)}, not {self.network!r}"
            )
        if self.ports and self.network != "bridge":
            raise ContainerError("published ports need the bridge network")
        if (self.overlays or self.cluster_networks) and self.network == "host":
            raise ContainerError("a container on the host's network cannot join overlay networks")
        for network in self.cluster_networks:
            if not NAME_RE.match(network):
                raise ContainerError(f"invalid network name {network!r}")
        if len(set(self.cluster_networks)) != len(self.cluster_networks):
            raise ContainerError("a container joins each overlay network once")
        for overlay in self.overlays:
            overlay.validate()
        if len({o.network_id for o in self.overlays}) != len(self.overlays):
            raise ContainerError("a container joins each overlay network once")
        if self.limits.memory_bytes < 0 or self.limits.nano_cpus < 0 or self.limits.pids < 0:
            raise ContainerError("limits cannot be negative")
        if 0 < self.limits.memory_bytes < 6 * 1024 * 1024:
            raise ContainerError("the minimum memory limit is 6 MiB")
        if self.stop_timeout < 0:
            raise ContainerError("stop timeout cannot be negative")
        for mount in self.mounts:
            mount.validate()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerSpec:
        data = dict(data)
        data["command"] = tuple(data["command"])
        data["entrypoint"] = tuple(data["entrypoint"]) if data["entrypoint"] is not None else None
        data["env"] = tuple(data["env"])
        data["mounts"] = tuple(Mount(**m) for m in data["mounts"])
        data["limits"] = Limits(**data["limits"])
        data["ports"] = tuple(data["ports"])
        data["overlays"] = tuple(OverlayAttachment(**o) for o in data.get("overlays", ()))
        data["cluster_networks"] = tuple(data.get("cluster_networks", ()))
        return cls(**data)


class ProcessPlan(NamedTuple):
    """The process the container runs, resolved from the image config and the spec."""

    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str


def resolve_process(
    spec: ContainerSpec, image_config: dict[str, Any], hostname: str
) -> ProcessPlan:
    """Docker's rules: entrypoint + cmd, spec env over image env, HOSTNAME and PATH set."""
    conf = image_config.get("config") or {}
    entrypoint = list(
        spec.entrypoint if spec.entrypoint is not None else conf.get("Entrypoint") or []
    )
    if spec.entrypoint is not None:
        cmd = list(spec.command)
    else:
        cmd = list(spec.command or conf.get("Cmd") or [])
    argv = tuple(entrypoint + cmd)
    if not argv:
        raise ContainerError("no command: the image has no Cmd or Entrypoint and none was given")
    env: dict[str, str] = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    for item in [*(conf.get("Env") or []), f"HOSTNAME={hostname}", *spec.env]:
        key, _, value = item.partition("=")
        env[key] = value
    return ProcessPlan(
        argv=argv,
        env=tuple(f"{k}={v}" for k, v in env.items()),
        cwd=spec.workdir or conf.get("WorkingDir") or "/",
        user=spec.user or conf.get("User") or "",
    )
