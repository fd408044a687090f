"""Overlay networks across lab machines: real VXLAN devices on the lab switch, real
namespaces standing in for containers, real netlink (no agent or manager yet)."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from common import namespaces
from runtime.config import EngineConfig
from runtime.container import exec as container_exec
from runtime.container.engine import Engine
from runtime.container.spec import ContainerSpec, OverlayAttachment
from runtime.engine_factory import LazyNetworks
from runtime.network.errors import NetworkError
from runtime.network.ipam import mac_for
from runtime.network.overlay import Endpoint, OverlayNetwork, OverlaySpec
from runtime.network.vxlan import Peer
from tests.integration.conftest import LabHandle
from tests.integration.local_image import LocalImage
from tests.integration.runtime.network.conftest import (
    EngineHost,
    ipv4_of,
    links_in,
    tcp_exchange,
    tcp_server,
)

SUBNET = IPv4Network("10.200.0.0/24")
BLUE_VNI = 4102
GATEWAY = IPv4Address("10.200.0.1")


@pytest.fixture
def hosts(lab: LabHandle) -> list[EngineHost]:
    return [EngineHost(m, m.state_dir / "shoal") for m in lab.machines]


def _overlay(host: EngineHost, network_id: str = "net1", vni: int = 4097) -> OverlayNetwork:
    spec = OverlaySpec(network_id, vni, SUBNET, GATEWAY, IPv4Address(host.ip))
    return OverlayNetwork(host.root / "network" / "overlay" / network_id, spec)


@pytest.fixture
def overlays(hosts: list[EngineHost]) -> Iterator[list[OverlayNetwork]]:
    made = [_overlay(h) for h in hosts]
    yield made
    for host, overlay in zip(hosts, made, strict=True):
        if host.machine.running:
            host.call(overlay.remove)


def _attach(host: EngineHost, overlay: OverlayNetwork, cid: str, netns: Path, ip: str) -> Endpoint:
    return host.call(lambda: overlay.attach(cid, str(netns), IPv4Address(ip)))


def _peer(host: EngineHost, endpoint: Endpoint) -> Peer:
    return Peer(endpoint.address.ip, endpoint.mac, IPv4Address(host.ip))


def _neighbours(sandbox: Path) -> dict[str, str]:
    def work() -> dict[str, str]:
        with IPRoute() as ipr:
            (index,) = ipr.link_lookup(ifname="vxlan0")
            return {
                str(n.get_attr("NDA_DST")): str(n.get_attr("NDA_LLADDR"))
                for n in ipr.get_neighbours(ifindex=index, family=socket.AF_INET)
            }

    return namespaces.call_in_netns(sandbox, work)


def _cannot_connect(client_ns: Path, address: str, port: int) -> bool:
    client = namespaces.call_in_netns(
        client_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    )
    with client:
        client.settimeout(1.0)  # a bound on a connection that must not happen
        try:
            client.connect((address, port))
        except OSError as exc:
            return isinstance(exc, TimeoutError) or exc.errno in (
                errno.EHOSTUNREACH,
                errno.ECONNREFUSED,
            )
    return False


def test_containers_on_two_machines_reach_each_other_over_vxlan(
    hosts: list[EngineHost],
    overlays: list[OverlayNetwork],
    container_ns: Callable[[str], Path],
) -> None:
    (a, b), (net_a, net_b) = hosts, overlays
    ns_a, ns_b = container_ns("a"), container_ns("b")
    ep_a = _attach(a, net_a, "ca", ns_a, "10.200.0.2")
    ep_b = _attach(b, net_b, "cb", ns_b, "10.200.0.3")
    assert ep_a.mac == mac_for(IPv4Address("10.200.0.2")) and ep_a.ifname == "eth0"
    assert ipv4_of(ns_a, "eth0") == ["10.200.0.2/24"]
    assert links_in(ns_a)["eth0"].get_attr("IFLA_MTU") == 1450  # lab MTU 1500 - 50
    everyone = [_peer(a, ep_a), _peer(b, ep_b)]
    for host, net in zip(hosts, overlays, strict=True):
        host.call(lambda net=net: net.set_peers(everyone))  # type: ignore[misc]
    # Only the other machine's endpoint is programmed; the own one is local.
    assert _neighbours(net_a.sandbox) == {"10.200.0.3": ep_b.mac}
    with tcp_server(ns_b, 8080) as server:
        assert tcp_exchange(server, ns_a, "10.200.0.3", 8080) == "10.200.0.2"
    with tcp_server(ns_a, 8081) as server:
        assert tcp_exchange(server, ns_b, "10.200.0.2", 8081) == "10.200.0.3"
    # The VXLAN device lives in the sandbox; nothing of the overlay is in the machine's own
    # namespace but its UDP socket.
    assert "vxlan0" in links_in(net_a.sandbox)
    assert not any(kind == "vxlan" for kind in _kinds(a.netns).values())


def _kinds(path: Path) -> dict[str, str | None]:
    return {
        name: link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        for name, link in links_in(path).items()
    }


def test_peers_follow_the_endpoints_that_come_and_go(
    hosts: list[EngineHost],
    overlays: list[OverlayNetwork],
    container_ns: Callable[[str], Path],
) -> None:
    (a, b), (net_a, net_b) = hosts, overlays
    ns_a, ns_b, ns_c = container_ns("a"), container_ns("b"), container_ns("c")
    ep_a = _attach(a, net_a, "ca", ns_a, "10.200.0.2")
    ep_b = _attach(b, net_b, "cb", ns_b, "10.200.0.3")
    ep_c = _attach(b, net_b, "cc", ns_c, "10.200.0.4")
    a.call(lambda: net_a.set_peers([_peer(b, ep_b), _peer(b, ep_c)]))
    b.call(lambda: net_b.set_peers([_peer(a, ep_a)]))
    assert _neighbours(net_a.sandbox) == {"10.200.0.3": ep_b.mac, "10.200.0.4": ep_c.mac}
    with tcp_server(ns_c, 8080) as server:
        assert tcp_exchange(server, ns_a, "10.200.0.4", 8080) == "10.200.0.2"

    # cc leaves: machine a forgets it, and cannot reach its old address any more.
    b.call(lambda: net_b.detach("cc"))
    a.call(lambda: net_a.set_peers([_peer(b, ep_b)]))
    assert _neighbours(net_a.sandbox) == {"10.200.0.3": ep_b.mac}
    assert _cannot_connect(ns_a, "10.200.0.4", 8080)
    # Programming the same set again (a restarted agent) changes nothing.
    a.call(lambda: net_a.set_peers([_peer(b, ep_b)]))
    assert _neighbours(net_a.sandbox) == {"10.200.0.3": ep_b.mac}
    with tcp_server(ns_b, 8080) as server:
        assert tcp_exchange(server, ns_a, "10.200.0.3", 8080) == "10.200.0.2"


def test_the_sandbox_comes_with_the_first_endpoint_and_goes_with_the_last(
    hosts: list[EngineHost],
    overlays: list[OverlayNetwork],
    container_ns: Callable[[str], Path],
) -> None:
    a, net_a = hosts[0], overlays[0]
    before = _kinds(a.netns)
    ns_1, ns_2 = container_ns("1"), container_ns("2")
    first = _attach(a, net_a, "c1", ns_1, "10.200.0.2")
    assert namespaces.is_bound(net_a.sandbox)
    # Attaching again (an agent that restarted) returns the same endpoint, makes nothing.
    fresh = _overlay(a)
    assert _attach(a, fresh, "c1", ns_1, "10.200.0.2") == first
    assert sorted(n for n in links_in(net_a.sandbox) if n.startswith("vsh")) == [first.veth]
    _attach(a, net_a, "c2", ns_2, "10.200.0.3")
    a.call(lambda: net_a.detach("c1"))
    assert "eth0" not in links_in(ns_1)  # the container's end went with the veth
    assert namespaces.is_bound(net_a.sandbox)
    a.call(lambda: fresh.detach("c2"))
    a.call(lambda: fresh.detach("c2"))  # absent is fine
    assert not net_a.sandbox.exists() and not net_a.directory.exists()
    assert _kinds(a.netns) == before


def test_bad_input_is_refused_clearly(
    hosts: list[EngineHost],
    overlays: list[OverlayNetwork],
    container_ns: Callable[[str], Path],
) -> None:
    a, net_a = hosts[0], overlays[0]
    ns_1, ns_2 = container_ns("1"), container_ns("2")
    with pytest.raises(
        NetworkError, match=re.escape("10.201.0.2 is no container address of 10.200.0.0/24")
    ):
        _attach(a, net_a, "c1", ns_1, "10.201.0.2")
    with pytest.raises(NetworkError, match="is no container address"):
        _attach(a, net_a, "c1", ns_1, str(GATEWAY))
    _attach(a, net_a, "c1", ns_1, "10.200.0.2")
    with pytest.raises(NetworkError, match=re.escape("10.200.0.2 is taken on overlay net1")):
        _attach(a, net_a, "c2", ns_2, "10.200.0.2")
    with pytest.raises(NetworkError, match=re.escape("on overlay net1 already, as 10.200.0.2/24")):
        _attach(a, net_a, "c1", ns_1, "10.200.0.9")
    with pytest.raises(NetworkError, match="VNI 0 is outside"):
        OverlaySpec("n", 0, SUBNET, GATEWAY, IPv4Address(a.ip)).validate()
    other = OverlayNetwork(
        net_a.directory, OverlaySpec("net1", 5000, SUBNET, GATEWAY, IPv4Address(a.ip))
    )
    with pytest.raises(NetworkError, match="set up here with VNI 4097"):
        a.call(lambda: other.attach("c3", str(ns_2), IPv4Address("10.200.0.5")))
    # Nothing of the refused attempts is attached.
    recorded = json.loads((net_a.directory / "state.json").read_text())["endpoints"]
    assert [e["container_id"] for e in recorded] == ["c1"]
    assert "eth0" not in links_in(ns_2)


# -- containers of the engine -----------------------------------------------------------------


def _engine(host: EngineHost) -> Engine:
    config = EngineConfig(
        root=host.root, cgroup_parent=f"{host.machine.cgroup_parent}/shoal-overlay"
    )
    return Engine(config, network=LazyNetworks(config), cleanup_on_exit=False)


def _exec_output(host: EngineHost, engine: Engine, cid: str, *argv: str) -> tuple[int, str]:
    read, write = os.pipe()
    try:
        pid, _ = host.call(lambda: engine.exec(cid, argv, stdio=(write, write, write)))
    finally:
        os.close(write)
    with os.fdopen(read) as out:
        text = out.read()
    return container_exec.wait(pid), text


def test_engine_containers_on_two_machines_talk_over_the_overlay(
    hosts: list[EngineHost], busybox: LocalImage
) -> None:
    """Real containers: eth0 on the overlay, eth1 on the machine's bridge (the way out,
    with the default route), or no way out at all (an internal network's container); a
    web server on machine b answers a client on machine a."""
    (a, b) = hosts
    engines = [_engine(a), _engine(b)]
    attachments = [
        OverlayAttachment("net1", 4097, str(SUBNET), str(GATEWAY), ip, h.ip, "front")
        for h, ip in ((a, "10.200.0.2"), (b, "10.200.0.3"))
    ]
    client_spec = ContainerSpec(
        image="busybox", command=("sleep", "600"), overlays=(attachments[0],)
    )
    server_spec = ContainerSpec(
        image="busybox",
        command=("httpd", "-f", "-p", "8080", "-h", "/etc"),
        hostname="web",
        overlays=(attachments[1],),
        network="none",  # as on an --internal network: no way out, only the overlay
    )
    try:
        client = a.call(lambda: engines[0].run(client_spec, busybox))
        server = b.call(lambda: engines[1].run(server_spec, busybox))
        for host, engine, cid, peer_host, peer in (
            (a, engines[0], client, b, attachments[1]),
            (b, engines[1], server, a, attachments[0]),
        ):
            own = attachments[engines.index(engine)]
            endpoint = engine.inspect(cid)["NetworkSettings"]["Overlays"]["net1"]
            assert (endpoint["ifname"], endpoint["address"]) == ("eth0", f"{own.address}/24")
            network = LazyNetworks(engine.config).overlay(own)
            peer_ip = IPv4Address(peer.address)
            remote = Peer(peer_ip, mac_for(peer_ip), IPv4Address(peer_host.ip))
            host.call(lambda network=network, remote=remote: network.set_peers([remote]))  # type: ignore[misc]
        code, routes = _exec_output(a, engines[0], client, "ip", "route")
        assert code == 0 and "default via 172.18.0.1 dev eth1" in routes, routes
        code, routes = _exec_output(b, engines[1], server, "ip", "route")
        assert (code, routes.split()) == (
            0,
            "10.200.0.0/24 dev eth0 scope link src 10.200.0.3".split(),
        )
        code, page = _exec_output(
            a, engines[0], client, "wget", "-q", "-O", "-", "http://10.200.0.3:8080/hostname"
        )
        assert (code, page) == (0, "web\n")
    finally:
        for host, engine in zip(hosts, engines, strict=True):
            for info in engine.list(all=True):
                host.call(lambda engine=engine, info=info: engine.remove(info["Id"], force=True))  # type: ignore[misc]
    # The last container gone, nothing of the overlay is left on either machine.
    for host in hosts:
        assert not (host.root / "network" / "overlay" / "net1").exists()


def test_two_networks_are_apart_even_on_one_subnet(
    hosts: list[EngineHost], container_ns: Callable[[str], Path]
) -> None:
    """Different VNIs are different segments: even told (wrongly) that blue's endpoint is
    one of its peers, a red container cannot reach it, as b has no red device for the frames
    to arrive on; red's own peer on b it reaches."""
    (a, b) = hosts
    red = [_overlay(h, "red", 4101) for h in hosts]
    blue = [_overlay(h, "blue", BLUE_VNI) for h in hosts]
    try:
        ns = {name: container_ns(name) for name in ("red-a", "red-b", "blue-b")}
        red_a = _attach(a, red[0], "ra", ns["red-a"], "10.200.0.2")
        blue_b = _attach(b, blue[1], "bb", ns["blue-b"], "10.200.0.4")
        a.call(lambda: red[0].set_peers([_peer(b, blue_b)]))  # a wrong peer
        b.call(lambda: blue[1].set_peers([_peer(a, red_a)]))
        # Frames for blue's endpoint leave a on red's VNI: b delivers them to no one.
        with tcp_server(ns["blue-b"], 8080):
            assert _cannot_connect(ns["red-a"], "10.200.0.4", 8080)
        red_b = _attach(b, red[1], "rb", ns["red-b"], "10.200.0.3")
        a.call(lambda: red[0].set_peers([_peer(b, red_b), _peer(b, blue_b)]))
        b.call(lambda: red[1].set_peers([_peer(a, red_a)]))
        with tcp_server(ns["red-b"], 8080) as server:
            assert tcp_exchange(server, ns["red-a"], "10.200.0.3", 8080) == "10.200.0.2"
    finally:
        for host, net in zip([*hosts, *hosts], [*red, *blue], strict=True):
            if host.machine.running:
                host.call(net.remove)
