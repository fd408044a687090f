"""Overlay networks: a subnet, a gateway, a VNI and an address pool each.

A network is allocated when its `ipam` holds its subnet and gateway and its `driver_state`
its VNI (options["vni"], as objects.proto says). Networks of other drivers (node-local ones)
get nothing from the managers: their attachments carry no address.
"""

from __future__ import annotations

import functools
import ipaddress
from ipaddress import IPv4Address, IPv4Network

from manager.allocator.addresses import AddressPool
from manager.allocator.errors import AllocationError
from manager.allocator.journal import Journal
from manager.allocator.subnets import PoolConfig, SubnetAllocator, parse_subnet
from manager.allocator.vnis import VNIAllocator
from shoal.v1 import objects_pb2, types_pb2

OVERLAY = "overlay"
VNI_OPTION = "vni"
IPAM_DRIVER = "default"


def describe(network: objects_pb2.Network) -> str:
    name = network.spec.annotations.name
    return f"network {name} ({network.id})" if name else f"network {network.id}"


def is_overlay(network: objects_pb2.Network) -> bool:
    """Cluster networks are overlay unless they name another driver."""
    return network.spec.driver_config.name in ("", OVERLAY)


def is_allocated(network: objects_pb2.Network) -> bool:
    if not is_overlay(network):
        return True
    configs = network.ipam.configs
    return (
        VNI_OPTION in network.driver_state.options
        and len(configs) == 1
        and bool(configs[0].subnet)
        and bool(configs[0].gateway)
    )


def _parse_address(text: str, subnet: IPv4Network, what: str) -> IPv4Address:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise AllocationError(f"{what} {text!r} is not an IP address") from None
    if not isinstance(address, IPv4Address) or address not in subnet:
        raise AllocationError(f"{what} {text} is outside subnet {subnet}")
    if address in (subnet.network_address, subnet.broadcast_address):
        raise AllocationError(f"{what} {text} is not a host address of subnet {subnet}")
    return address


def _requested_config(network: objects_pb2.Network) -> types_pb2.IPAMConfig:
    spec = network.spec
    if spec.ipv6_enabled:
        raise AllocationError(f"{describe(network)}: IPv6 is not supported on overlay networks")
    configs = spec.ipam.configs
    if len(configs) > 1:
        raise AllocationError(
            f"{describe(network)}: {len(configs)} IPAM configs given; overlay networks have one"
        )
    config = configs[0] if configs else types_pb2.IPAMConfig()
    if config.family == types_pb2.IPAMConfig.IPV6:
        raise AllocationError(f"{describe(network)}: IPv6 is not supported on overlay networks")
    return config


class NetworkAllocator:
    def __init__(self) -> None:
        self._subnets = SubnetAllocator()
        self._vnis = VNIAllocator()
        self._pools: dict[str, AddressPool] = {}

    def pool(self, network_id: str) -> AddressPool | None:
        return self._pools.get(network_id)

    def vni(self, network_id: str) -> int | None:
        return self._vnis.vni_of(network_id)

    def allocate(
        self,
        network: objects_pb2.Network,
        config: PoolConfig | AllocationError,
        journal: Journal,
    ) -> objects_pb2.Network:
        """`network` with subnet, gateway and VNI filled in; held until `journal` rolls back.
        `config` is the cluster's pool configuration, or why it is unusable."""
        requested = _requested_config(network)
        what = describe(network)
        if requested.subnet:
            subnet = parse_subnet(requested.subnet, f"{what}: subnet")
            self._subnets.reserve(network.id, subnet)
        elif isinstance(config, AllocationError):
            raise AllocationError(f"{what}: {config}")
        else:
            subnet = self._subnets.allocate(network.id, config)
        try:
            pool = self._pool(network.id, what, subnet, requested)
            vni = self._vnis.allocate(network.id)
        except AllocationError:
            self._subnets.release(network.id)
            raise
        self._pools[network.id] = pool
        journal.on_rollback(functools.partial(self.release, network.id))

        allocated = objects_pb2.Network()
        allocated.CopyFrom(network)
        allocated.ipam.Clear()
        allocated.ipam.driver.name = IPAM_DRIVER
        allocated.ipam.configs.add(
            family=types_pb2.IPAMConfig.IPV4,
            subnet=str(subnet),
            gateway=str(pool.gateway),
            range=requested.range,
            reserved=dict(requested.reserved),
        )
        allocated.driver_state.Clear()
        allocated.driver_state.name = OVERLAY
        allocated.driver_state.options[VNI_OPTION] = str(vni)
        return allocated

    def restore(self, network: objects_pb2.Network) -> None:
        """Hold what an allocated network (read from the store) already has."""
        if not is_overlay(network) or network.id in self._pools:
            return
        what = describe(network)
        config = network.ipam.configs[0]
        subnet = parse_subnet(config.subnet, f"{what}: allocated subnet")
        try:
            vni = int(network.driver_state.options[VNI_OPTION])
        except ValueError:
            raise AllocationError(
                f"{what}: VNI {network.driver_state.options[VNI_OPTION]!r} is not a number"
            ) from None
        pool = self._pool(network.id, what, subnet, config)
        self._subnets.reserve(network.id, subnet)
        try:
            self._vnis.reserve(vni, network.id)
        except AllocationError:
            self._subnets.release(network.id)
            raise
        self._pools[network.id] = pool

    def release(self, network_id: str) -> None:
        self._subnets.release(network_id)
        self._vnis.release(network_id)
        self._pools.pop(network_id, None)

    def attach(self, network_id: str, owner: str, requested: str, journal: Journal) -> str:
        """An address (CIDR form) on the network for `owner`: `requested` if given."""
        pool = self._pools[network_id]
        if requested:
            address = pool.parse(requested)
            pool.reserve(address, owner)
        else:
            address = pool.allocate(owner)
        journal.on_rollback(functools.partial(pool.release, address, owner))
        return pool.cidr(address)

    def hold(self, network_id: str, cidr: str, owner: str) -> None:
        """Hold an address found in the store for `owner`."""
        pool = self._pools.get(network_id)
        if pool is None:
            raise AllocationError(f"address {cidr} is on network {network_id}, which is unknown")
        pool.reserve(pool.parse(cidr), owner)

    def detach(self, network_id: str, cidr: str, owner: str) -> None:
        pool = self._pools.get(network_id)
        if pool is None:
            return
        try:
            address = pool.parse(cidr)
        except AllocationError:
            return  # not an address of this pool: nothing of it is held
        pool.release(address, owner)

    @staticmethod
    def _pool(
        network_id: str, what: str, subnet: IPv4Network, config: types_pb2.IPAMConfig
    ) -> AddressPool:
        gateway = (
            _parse_address(config.gateway, subnet, f"{what}: gateway")
            if config.gateway
            else subnet.network_address + 1
        )
        dynamic = parse_subnet(config.range, f"{what}: range") if config.range else None
        if dynamic is not None and not dynamic.subnet_of(subnet):
            raise AllocationError(f"{what}: range {dynamic} is outside subnet {subnet}")
        reserved = [_parse_address(a, subnet, f"{what}: reserved address") for a in config.reserved]
        return AddressPool(what, subnet, gateway, dynamic, reserved)
