"""Service endpoints: ports published in ingress mode, and a virtual IP per network.

The allocated endpoint (Service.endpoint) records the spec it was made for; a service whose
endpoint spec or networks changed is allocated again, keeping the ports and VIPs it can.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from manager.allocator.errors import AllocationError
from manager.allocator.journal import Journal
from manager.allocator.networks import NetworkAllocator
from manager.allocator.ports import PortAllocator, PortKey, describe
from shoal.v1 import objects_pb2, types_pb2

INGRESS = types_pb2.PortConfig.INGRESS


def service_name(service: objects_pb2.Service) -> str:
    name = service.spec.annotations.name
    return f"service {name} ({service.id})" if name else f"service {service.id}"


def publishes_ingress(spec: types_pb2.EndpointSpec) -> bool:
    return any(port.publish_mode == INGRESS for port in spec.ports)


def vip_owner(service_id: str) -> str:
    return f"the VIP of service {service_id}"


class EndpointAllocator:
    def __init__(self, networks: NetworkAllocator) -> None:
        self._networks = networks
        self._ports = PortAllocator()
        self._names: dict[str, str] = {}  # service id -> description, for messages
        self._held_ports: dict[str, set[PortKey]] = {}
        self._vips: dict[str, dict[str, str]] = {}  # service id -> network id -> VIP

    @staticmethod
    def is_current(service: objects_pb2.Service, vip_networks: Sequence[str]) -> bool:
        """Whether the stored endpoint is the one the spec asks for on those networks."""
        endpoint = service.endpoint
        return (
            endpoint.spec == service.spec.endpoint
            and len(endpoint.ports) == len(service.spec.endpoint.ports)
            and [vip.network_id for vip in endpoint.virtual_ips] == list(vip_networks)
        )

    def restore(self, service: objects_pb2.Service) -> None:
        """Hold the ports and VIPs of an endpoint read from the store."""
        self._names[service.id] = service_name(service)
        for port in service.endpoint.ports:
            if port.publish_mode == INGRESS and port.published_port:
                self._claim((port.protocol, port.published_port), service.id, Journal())
        vips = self._vips.setdefault(service.id, {})
        for vip in service.endpoint.virtual_ips:
            if self._networks.pool(vip.network_id) is None:
                continue  # the network is gone: nothing of it to hold
            self._networks.hold(vip.network_id, vip.addr, vip_owner(service.id))
            vips[vip.network_id] = vip.addr

    def allocate(
        self, service: objects_pb2.Service, vip_networks: Sequence[str], journal: Journal
    ) -> objects_pb2.Endpoint:
        """The endpoint for the service's current spec: ports, then a VIP per network."""
        spec = service.spec.endpoint
        self._names[service.id] = service_name(service)
        if spec.mode == types_pb2.EndpointSpec.DNSRR and publishes_ingress(spec):
            raise AllocationError(
                "endpoint mode dnsrr cannot publish ports in ingress mode "
                "(publish them in host mode)"
            )
        endpoint = objects_pb2.Endpoint(spec=spec)
        endpoint.ports.extend(self._allocate_ports(service, journal))
        for network_id, addr in self._allocate_vips(service.id, vip_networks, journal):
            endpoint.virtual_ips.add(network_id=network_id, addr=addr)
        return endpoint

    def release(self, service_id: str) -> None:
        for key in self._held_ports.pop(service_id, set()):
            self._ports.release(key, service_id)
        for network_id, addr in self._vips.pop(service_id, {}).items():
            self._networks.detach(network_id, addr, vip_owner(service_id))
        self._names.pop(service_id, None)

    def _allocate_ports(
        self, service: objects_pb2.Service, journal: Journal
    ) -> list[types_pb2.PortConfig]:
        ports = service.spec.endpoint.ports
        wanted: set[PortKey] = set()
        # Explicit ports first, so that a dynamic one never takes a port asked for by name.
        for port in ports:
            if port.publish_mode == INGRESS and port.published_port:
                key = (port.protocol, port.published_port)
                if key in wanted:
                    raise AllocationError(f"port {describe(key)} is published twice")
                self._claim(key, service.id, journal)
                wanted.add(key)
        held = self._held_ports.setdefault(service.id, set())
        previous = {
            (p.protocol, p.target_port, p.name): p.published_port
            for p in service.endpoint.ports
            if p.publish_mode == INGRESS
        }
        result = []
        for port in ports:
            allocated = types_pb2.PortConfig()
            allocated.CopyFrom(port)
            if port.publish_mode == INGRESS and not port.published_port:
                kept = previous.get((port.protocol, port.target_port, port.name), 0)
                key = (port.protocol, kept)
                if not kept or key not in held or key in wanted:
                    key = self._ports.allocate(port.protocol, service.id)
                    self._hold_port(key, service.id, journal)
                wanted.add(key)
                allocated.published_port = key[1]
            result.append(allocated)
        for key in held - wanted:
            journal.on_commit(functools.partial(self._release_port, key, service.id))
        return result

    def _claim(self, key: PortKey, service_id: str, journal: Journal) -> None:
        holder = self._ports.owner(key)
        if holder == service_id:
            return
        if holder is not None:
            raise AllocationError(
                f"port {describe(key)} is already published by "
                f"{self._names.get(holder, f'service {holder}')}"
            )
        self._ports.reserve(key, service_id)
        self._hold_port(key, service_id, journal)

    def _hold_port(self, key: PortKey, service_id: str, journal: Journal) -> None:
        self._held_ports.setdefault(service_id, set()).add(key)
        journal.on_rollback(functools.partial(self._release_port, key, service_id))

    def _release_port(self, key: PortKey, service_id: str) -> None:
        self._ports.release(key, service_id)
        self._held_ports.get(service_id, set()).discard(key)

    def _allocate_vips(
        self, service_id: str, vip_networks: Sequence[str], journal: Journal
    ) -> list[tuple[str, str]]:
        vips = self._vips.setdefault(service_id, {})
        owner = vip_owner(service_id)
        result = []
        for network_id in vip_networks:
            addr = vips.get(network_id)
            if addr is None:
                addr = self._networks.attach(network_id, owner, "", journal)
                vips[network_id] = addr
                journal.on_rollback(functools.partial(self._forget_vip, service_id, network_id))
            result.append((network_id, addr))
        for network_id, addr in list(vips.items()):
            if network_id not in vip_networks:
                journal.on_commit(functools.partial(self._drop_vip, service_id, network_id, addr))
        return result

    def _forget_vip(self, service_id: str, network_id: str) -> None:
        self._vips.get(service_id, {}).pop(network_id, None)

    def _drop_vip(self, service_id: str, network_id: str, addr: str) -> None:
        self._networks.detach(network_id, addr, vip_owner(service_id))
        self._forget_vip(service_id, network_id)
