"""A network spec: name, overlay driver, IPAM configuration, ingress/internal/attachable."""

from __future__ import annotations

import ipaddress

from common.errors import shown
from manager.controlapi.errors import InvalidArgument
from manager.controlapi.validation.fields import (
    check_cidr,
    check_driver,
    check_enum,
    check_ip,
    check_labels,
    check_object_name,
    check_spec_size,
    check_text,
)
from shoal.v1 import specs_pb2, types_pb2

MAX_NETWORK_SPEC_BYTES = 64 * 1024
MAX_IPAM_CONFIGS = 16
OVERLAY_DRIVER = "overlay"
DEFAULT_IPAM_DRIVER = "default"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_network_spec(spec: specs_pb2.NetworkSpec, field: str = "spec") -> None:
    check_spec_size(field, spec, MAX_NETWORK_SPEC_BYTES)
    check_object_name(f"{field}.annotations.name", spec.annotations.name)
    check_labels(f"{field}.annotations.labels", spec.annotations.labels)
    if spec.HasField("driver_config"):
        check_driver(f"{field}.driver_config", spec.driver_config)
        if spec.driver_config.name != OVERLAY_DRIVER:
            raise InvalidArgument(
                f"{field}.driver_config.name",
                f"unsupported driver {shown(spec.driver_config.name)} "
                f"(Shoal's cluster networks are {OVERLAY_DRIVER!r})",
            )
    if spec.ingress and spec.attachable:
        raise InvalidArgument(f"{field}.attachable", "the ingress network cannot be attachable")
    if spec.ingress and spec.internal:
        raise InvalidArgument(
            f"{field}.internal", "the ingress network cannot be internal (it publishes ports)"
        )
    if spec.HasField("ipam"):
        check_ipam(f"{field}.ipam", spec.ipam)


def check_ipam(field: str, ipam: types_pb2.IPAMOptions) -> None:
    if ipam.HasField("driver"):
        check_driver(f"{field}.driver", ipam.driver)
        if ipam.driver.name != DEFAULT_IPAM_DRIVER:
            raise InvalidArgument(
                f"{field}.driver.name",
                f"unsupported IPAM driver {shown(ipam.driver.name)} "
                f"(only the built-in {DEFAULT_IPAM_DRIVER!r})",
            )
    if len(ipam.configs) > MAX_IPAM_CONFIGS:
        raise InvalidArgument(
            f"{field}.configs", f"{len(ipam.configs)} entries, more than {MAX_IPAM_CONFIGS}"
        )
    subnets: list[tuple[int, Network]] = []
    for number, config in enumerate(ipam.configs):
        path = f"{field}.configs[{number}]"
        subnet = check_ipam_config(path, config)
        if subnet is None:
            continue
        for other_number, other in subnets:
            if subnet.version == other.version and subnet.overlaps(other):
                raise InvalidArgument(
                    f"{path}.subnet",
                    f"{subnet} overlaps {other} ({field}.configs[{other_number}].subnet)",
                )
        subnets.append((number, subnet))


def check_ipam_config(field: str, config: types_pb2.IPAMConfig) -> Network | None:
    """Checks one IPAM config; returns its subnet (None: to be allocated)."""
    check_enum(f"{field}.family", config.family, types_pb2.IPAMConfig.AddressFamily.DESCRIPTOR)
    if not config.subnet:
        for name in ("range", "gateway"):
            if getattr(config, name):
                raise InvalidArgument(f"{field}.{name}", "needs an explicit subnet")
        if config.reserved:
            raise InvalidArgument(f"{field}.reserved", "needs an explicit subnet")
        return None
    subnet = check_cidr(f"{field}.subnet", config.subnet)
    if config.family != types_pb2.IPAMConfig.UNKNOWN and config.family != subnet.version:
        family = types_pb2.IPAMConfig.AddressFamily.Name(config.family)
        raise InvalidArgument(f"{field}.subnet", f"{subnet} is not an {family} network")
    if subnet.num_addresses < 4:
        raise InvalidArgument(f"{field}.subnet", f"{subnet} is too small for tasks")
    if config.range:
        pool = check_cidr(f"{field}.range", config.range)
        if pool.version != subnet.version or not pool.subnet_of(subnet):  # type: ignore[arg-type]
            raise InvalidArgument(f"{field}.range", f"{pool} is not inside the subnet {subnet}")
    if config.gateway:
        gateway = check_ip(f"{field}.gateway", config.gateway)
        _check_usable(f"{field}.gateway", gateway, subnet)
    for address, why in config.reserved.items():
        path = f"{field}.reserved[{shown(address)}]"
        _check_usable(path, check_ip(path, address), subnet)
        check_text(path, why, 1024)
    return subnet


def _check_usable(
    field: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, subnet: Network
) -> None:
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(field, f"{address} is not a usable address of {subnet}")
