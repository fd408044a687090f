"""Bridge networking inside lab machines: an engine's view of a machine, container network
namespaces, and sockets made inside namespaces (the only places test traffic may go)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pyroute2 import IPRoute

from common import libc, namespaces
from deploy.netns_driver import Machine
from runtime.config import EngineConfig
from runtime.network import Attachment, BridgeNetwork, parse_port
from runtime.network import nft as nft_command
from tests.integration.conftest import LabHandle
from tests.polling import until

T = TypeVar("T")
TIMEOUT_S = 5.0


def links_in(path: Path) -> dict[str, Any]:
    """Link name -> RTM_NEWLINK message, for the namespace at `path`."""

    def work() -> dict[str, Any]:
        with IPRoute() as ipr:
            return {str(link.get_attr("IFLA_IFNAME")): link for link in ipr.get_links()}

    return namespaces.call_in_netns(path, work)


def ipv4_of(path: Path, ifname: str) -> list[str]:
    def work() -> list[str]:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                return []
            return [
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in ipr.get_addr(index=found[0], family=socket.AF_INET)
            ]

    return namespaces.call_in_netns(path, work)


def default_gateway_of(path: Path) -> str | None:
    def work() -> str | None:
        with IPRoute() as ipr:
            for route in ipr.get_routes(family=socket.AF_INET, table=254):
                if route["dst_len"] == 0:
                    return str(route.get_attr("RTA_GATEWAY"))
        return None

    return namespaces.call_in_netns(path, work)


def tcp_server(path: Path, port: int, address: str = "0.0.0.0") -> socket.socket:
    """A listening TCP socket inside the namespace at `path`."""
    server = namespaces.call_in_netns(path, lambda: socket.create_server((address, port)))
    server.settimeout(TIMEOUT_S)
    return server


def udp_server(path: Path, port: int) -> socket.socket:
    """A bound UDP socket inside the namespace at `path`."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        return sock

    return namespaces.call_in_netns(path, make)


def tcp_exchange(server: socket.socket, client_ns: Path, address: str, port: int) -> str:
    """Connect from `client_ns` to address:port, answered by `server`; returns the client
    address the server saw. The client socket is made inside `client_ns`."""
    client = namespaces.call_in_netns(
        client_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    )
    with client:
        client.settimeout(TIMEOUT_S)
        client.connect((address, port))
        conn, peer = server.accept()
        with conn:
            client.sendall(b"ping")
            assert conn.recv(4) == b"ping"
            conn.sendall(b"pong")
            assert client.recv(4) == b"pong"
    return str(peer[0])


def udp_client(path: Path) -> socket.socket:
    """An unbound UDP socket inside the namespace at `path`."""
    client = namespaces.call_in_netns(
        path, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    )
    client.settimeout(TIMEOUT_S)
    return client


def udp_exchange(server: socket.socket, client: socket.socket, address: str, port: int) -> str:
    """Send datagrams from `client` to address:port until `server` gets one (bounded),
    answer it, and return the client address the server saw."""
    server.settimeout(0.2)

    def ping() -> tuple[bytes, Any]:
        client.sendto(b"ping", (address, port))
        return server.recvfrom(16)

    data, peer = until(
        ping,
        f"a datagram to reach the server via {address}:{port}",
        timeout_s=TIMEOUT_S,
        interval_s=0,  # each try waits for an answer already
        max_tries=50,
        retry_on=(TimeoutError,),
    )
    assert data == b"ping", f"no datagram reached the server via {address}:{port}"
    server.sendto(b"pong", peer)
    assert client.recvfrom(16)[0] == b"pong"
    return str(peer[0])


@dataclass
class EngineHost:
    """A lab machine acting as a Shoal engine: network calls run inside its namespace."""

    machine: Machine
    root: Path
    subnet: str = "172.18.0.0/16"

    @property
    def ip(self) -> str:
        return self.machine.record.ip

    @property
    def netns(self) -> Path:
        return self.machine.netns

    def new_network(self) -> BridgeNetwork:
        """A fresh BridgeNetwork object (an engine restart) on the same state."""
        return BridgeNetwork(EngineConfig(root=self.root), subnet=self.subnet)

    def call(self, work: Callable[[], T]) -> T:
        """Run `work` with the calling thread inside the machine's namespace."""
        with namespaces.entered_netns(self.machine.name):
            return work()

    def attach(
        self, container_id: str, netns: Path, ports: Sequence[str] = (), *, net: Any = None
    ) -> Attachment:
        network = net or self.new_network()
        mappings = [parse_port(p) for p in ports]
        return self.call(lambda: network.attach(container_id, str(netns), mappings))

    def detach(self, container_id: str) -> None:
        self.call(lambda: self.new_network().detach(container_id))

    def nft_table(self) -> list[dict[str, Any]] | None:
        return self.call(nft_command.list_table)

    def published(self) -> dict[str, set[tuple[Any, ...]]]:
        """Container id -> the (map, key) elements tagged with it in Shoal's nft table."""
        found: dict[str, set[tuple[Any, ...]]] = {}
        for obj in self.nft_table() or []:
            table_map = obj.get("map")
            if not table_map:
                continue
            for pair in table_map.get("elem", []):
                tagged = pair[0]["elem"]
                key = (table_map["name"], tuple(tagged["val"]["concat"]))
                found.setdefault(tagged["comment"], set()).add(key)
        return found


@pytest.fixture
def lab(make_lab: Callable[[int], LabHandle]) -> LabHandle:
    return make_lab(2)


@pytest.fixture
def host1(lab: LabHandle) -> Iterator[EngineHost]:
    """The engine on machine1; its bridge network is torn down after the test."""
    machine = lab.machines[0]
    host = EngineHost(machine, machine.state_dir / "shoal")
    yield host
    if machine.running:
        host.call(lambda: host.new_network().teardown_all())


@pytest.fixture
def container_ns(lab: LabHandle, tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """container_ns(name) -> a fresh network namespace bound at a temporary file (a
    container's), removed after the test."""
    made: list[Path] = []

    def factory(name: str) -> Path:
        path = tmp_path / f"ns-{name}"
        made.append(path)
        namespaces.create_bound(path, libc.CLONE_NEWNET)
        return path

    yield factory
    for path in made:
        namespaces.remove_bound(path)
