"""Containers on a lab machine's bridge: addresses, reachability, egress NAT, published ports."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.network import nft as nft_command
from runtime.network import sysctl
from tests.integration.conftest import LabHandle
from tests.integration.runtime.network.conftest import (
    EngineHost,
    default_gateway_of,
    ipv4_of,
    links_in,
    tcp_exchange,
    tcp_server,
    udp_client,
    udp_exchange,
    udp_server,
)

SUBNET = ipaddress.ip_network("172.18.0.0/16")


def test_containers_get_distinct_addresses_and_reach_each_other_and_the_gateway(
    host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    ns1, ns2 = container_ns("c1"), container_ns("c2")
    host_forwarding = sysctl.read("ipv4/ip_forward")
    a1 = host1.attach("c1", ns1)
    a2 = host1.attach("c2", ns2)

    assert a1.ip != a2.ip
    assert {ipaddress.ip_address(a.ip) in SUBNET for a in (a1, a2)} == {True}
    assert (a1.gateway, a1.prefixlen) == ("172.18.0.1", 16)
    for ns, att in ((ns1, a1), (ns2, a2)):
        eth0 = links_in(ns)["eth0"]
        assert eth0.get_attr("IFLA_ADDRESS") == att.mac
        assert att.mac == "02:42:" + ":".join(f"{int(b):02x}" for b in att.ip.split("."))
        assert ipv4_of(ns, "eth0") == [f"{att.ip}/16"]
        assert links_in(ns)["lo"]["flags"] & 1
        assert default_gateway_of(ns) == "172.18.0.1"

    # On the machine: shoal0 with the gateway address, both host-side veths enslaved to it.
    machine_links = links_in(host1.netns)
    bridge = machine_links["shoal0"]
    assert ipv4_of(host1.netns, "shoal0") == ["172.18.0.1/16"]
    for att in (a1, a2):
        assert len(att.host_veth) <= 15
        assert machine_links[att.host_veth].get_attr("IFLA_MASTER") == bridge["index"]
    assert host1.call(lambda: sysctl.read("ipv4/ip_forward")) == "1"

    # The engine's changes went to machine1's namespace, none to the host's.
    assert sysctl.read("ipv4/ip_forward") == host_forwarding
    assert nft_command.list_table() is None
    assert host1.nft_table() is not None

    # Container to container: straight over the bridge, no address translation.
    server = tcp_server(ns1, 7001)
    with server:
        assert tcp_exchange(server, ns2, a1.ip, 7001) == a2.ip
    # Container to the gateway (a server in machine1's own namespace).
    gateway_server = tcp_server(host1.netns, 7002, "172.18.0.1")
    with gateway_server:
        assert tcp_exchange(gateway_server, ns1, "172.18.0.1", 7002) == a1.ip


def test_egress_is_masqueraded_to_the_machine_address(
    lab: LabHandle, host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    machine2 = lab.machines[1]
    ns = container_ns("c1")
    host1.attach("c1", ns)
    server = tcp_server(machine2.netns, 7003)
    with server:
        assert tcp_exchange(server, ns, machine2.record.ip, 7003) == host1.ip


def test_published_tcp_port_is_reachable_from_another_machine_and_locally(
    lab: LabHandle, host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    machine2 = lab.machines[1]
    # Strict reverse-path filtering on the machine must not break any of these paths.
    host1.call(lambda: sysctl.write("ipv4/conf/all/rp_filter", "1"))
    ns1, ns2 = container_ns("web"), container_ns("client")
    web = host1.attach("web", ns1, ["8080:80", "127.0.0.1:9090:80"])
    client = host1.attach("client", ns2)
    server = tcp_server(ns1, 80)
    with server:
        # From another machine: the container sees the real client address.
        assert tcp_exchange(server, machine2.netns, host1.ip, 8080) == machine2.record.ip
        # From the machine itself, to its own address and to loopback.
        assert tcp_exchange(server, host1.netns, host1.ip, 8080) == host1.ip
        assert tcp_exchange(server, host1.netns, "127.0.0.1", 8080) == web.gateway
        # From another container through the machine's address (hairpin).
        assert tcp_exchange(server, ns2, host1.ip, 8080) == client.gateway
        # A port published on 127.0.0.1 only: local yes, from another machine no.
        assert tcp_exchange(server, host1.netns, "127.0.0.1", 9090) == web.gateway
        with pytest.raises(ConnectionRefusedError):
            tcp_exchange(server, machine2.netns, host1.ip, 9090)


def test_published_udp_port(
    lab: LabHandle, host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    machine2 = lab.machines[1]
    ns = container_ns("dns")
    host1.attach("dns", ns, ["5353:53/udp"])
    with (
        udp_server(ns, 53) as server,
        udp_client(machine2.netns) as remote,
        udp_client(host1.netns) as local,
    ):
        assert udp_exchange(server, remote, host1.ip, 5353) == machine2.record.ip
        assert udp_exchange(server, local, "127.0.0.1", 5353) == "172.18.0.1"
    # Nothing was published for TCP on that port.
    with tcp_server(ns, 53) as tcp, pytest.raises(ConnectionRefusedError):
        tcp_exchange(tcp, machine2.netns, host1.ip, 5353)


def test_a_udp_flow_follows_the_port_as_it_is_published_and_moved(
    lab: LabHandle, host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    """One client socket (one conntrack flow) keeps sending: datagrams sent before the
    port was published, or while it led to a removed container, must not pin the flow."""
    machine2 = lab.machines[1]
    host1.call(lambda: host1.new_network().setup())
    with udp_client(machine2.netns) as client:
        for _ in range(3):
            client.sendto(b"early", (host1.ip, 5353))
        first_ns, second_ns = container_ns("dns1"), container_ns("dns2")
        first = host1.attach("dns1", first_ns, ["5353:53/udp"])
        with udp_server(first_ns, 53) as server:
            assert udp_exchange(server, client, host1.ip, 5353) == machine2.record.ip
        host1.detach("dns1")
        squatter_ns = container_ns("squatter")
        assert host1.attach("squatter", squatter_ns).ip == first.ip  # dns1's old address
        with udp_server(squatter_ns, 53) as squatter:
            for _ in range(3):
                client.sendto(b"stale", (host1.ip, 5353))
            squatter.settimeout(0.5)
            with pytest.raises(TimeoutError):
                squatter.recvfrom(16)  # the unpublished port leads nowhere any more
        second = host1.attach("dns2", second_ns, ["5353:53/udp"])
        assert second.ip != first.ip
        with udp_server(second_ns, 53) as server:
            assert udp_exchange(server, client, host1.ip, 5353) == machine2.record.ip
