"""Overlay networks and the routing mesh against what they stand in for, in one run on one
topology.

A lab of two machines, A and B (network namespaces on the lab's switch, as `swarm-machine`
makes them). The same client and server code measures:

- overlay vs underlay: a container's network namespace on each machine, joined to one
  overlay network through Shoal's data plane (runtime.network.overlay: a VXLAN device per
  node, static peers); machine to machine over the underlay, container to container over
  the overlay: TCP throughput (one connection, 1 MiB writes; underlay and overlay take five
  turns each, the ratio is the median of the turns' ratios) and request latency (1-byte
  request, 1-byte answer, one at a time; median round trip);
- routing mesh vs host mode, request latency as above: a task on B, on an ingress overlay
  network (eth0) and on B's bridge (eth1, port 8081 published in host mode), answering on
  port 80; on each machine an ingress sandbox made as the agent makes it (agent.ingress),
  publishing port 8080 to the task, whose answers go back through the sandbox they came by
  (runtime.network.ingress.program_return_paths). Before timing, the task must see each
  client's own address, or the script fails. Paths:
  - host mode: a client on A to B:8081 (B's bridge DNATs straight to the task);
  - mesh, same node: a client on A to B:8080 (B's sandbox, then the task);
  - mesh, other node: a client on B to A:8080 (A's sandbox, then the overlay back to B):
    what any client meets at a node without a task; it crosses the underlay twice each
    way, host mode once. A client on A to A:8080 (a process on the node itself) is printed
    too.
- DNS: the embedded resolver's answer time at 127.0.0.11 inside the container (median),
  served by the agent's own code (agent.discovery) on an event loop of this process.

All latencies are measured together on one CPU, the paths taking turns (see
`latencies_us`). Everything lives in namespaces and directories this script creates and
removes; run as root:

    .venv/bin/python benchmarks/overlay.py [--seconds S] [--requests N]

Last line: throughput_vs_underlay=… latency_vs_underlay=… mesh_vs_host=… dns_ms=…
mesh_cross_vs_host=…, with the absolute figures before it (Gbit/s, microseconds):
mesh_vs_host is (mesh, same node) / (host mode), mesh_cross_vs_host (mesh, other node) /
(host mode).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import NamedTuple, TypeVar

import dns.message

from agent.discovery import Discovery
from common import libc, namespaces
from deploy.lab import Lab
from deploy.netns_driver import Machine
from runtime.config import EngineConfig
from runtime.network import ingress
from runtime.network.bridge import BridgeNetwork
from runtime.network.dns import Records
from runtime.network.ipam import mac_for
from runtime.network.overlay import OverlayNetwork, OverlaySpec
from runtime.network.ports import parse_port
from runtime.network.vxlan import Peer

T = TypeVar("T")

SUBNET = IPv4Network("10.210.0.0/24")
GATEWAY = IPv4Address("10.210.0.1")
PORT = 5201
ECHO_PORT = PORT + 1
CHUNK = 1 << 20
THROUGHPUT_ROUNDS = 5
TIMEOUT_S = 5.0  # any one socket operation
MAX_WRITES_PER_S = 20_000  # 1 MiB writes: ~170 Gbit/s, a bound never reached
MAX_ROUND_S = 60.0  # one round of latency measurements
ROUNDS = 5
BLOCK = 50  # requests on one route before the next route's turn

INGRESS_ID = "ingress"
INGRESS_VNI = 4097
INGRESS_SUBNET = IPv4Network("10.211.0.0/24")
INGRESS_GATEWAY = IPv4Address("10.211.0.1")
TASK_ID = "task"
TASK_ADDRESS = IPv4Address("10.211.0.10")
TASK_PORT = 80
MESH_PORT = 8080
HOST_PORT = 8081


def in_ns(path: Path, make: Callable[[], socket.socket]) -> socket.socket:
    return namespaces.call_in_netns(path, make)


def in_machine(machine: Machine, work: Callable[[], T]) -> T:
    """`work()` with the calling thread in the machine's namespace (the node's own)."""
    with namespaces.entered_netns(machine.name):
        return work()


class _Thread:
    """`work()` in a daemon thread; `join` re-raises its error in the caller's thread."""

    def __init__(self, work: Callable[[], None]) -> None:
        self._errors: list[BaseException] = []
        self._work = work
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # handed to the caller's thread
            self._errors.append(exc)

    def join(self) -> None:
        self._thread.join(TIMEOUT_S)
        if self._thread.is_alive():
            raise TimeoutError("a server thread did not finish")
        if self._errors:
            raise self._errors[0]


def listen(netns: Path, port: int) -> socket.socket:
    server = in_ns(netns, lambda: socket.create_server(("0.0.0.0", port)))
    server.settimeout(TIMEOUT_S)
    return server


def tcp_client(netns: Path) -> socket.socket:
    client = in_ns(netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    client.settimeout(TIMEOUT_S)
    return client


def throughput_gbits(server_ns: Path, client_ns: Path, address: str, seconds: float) -> float:
    received = [0]
    max_writes = int(seconds * MAX_WRITES_PER_S) + 1

    with listen(server_ns, PORT) as server:

        def sink() -> None:
            conn, _ = server.accept()
            buffer = bytearray(CHUNK)
            with conn:
                conn.settimeout(TIMEOUT_S)
                for _ in range(max_writes * CHUNK):  # a read is a byte at least
                    n = conn.recv_into(buffer)
                    if not n:
                        return
                    received[0] += n

        thread = _Thread(sink)
        payload = bytes(CHUNK)
        with tcp_client(client_ns) as client:
            client.connect((address, PORT))
            start = time.perf_counter()
            for _ in range(max_writes):
                if time.perf_counter() - start >= seconds:
                    break
                client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            thread.join()
            elapsed = time.perf_counter() - start
    return received[0] * 8 / elapsed / 1e9


class Route(NamedTuple):
    """Requests from a client in `client_ns` to address:port, answered by a server in
    `server_ns` on `listen_port` (another port when a DNAT is on the way), which must see
    the client as `seen_as`."""

    client_ns: Path
    server_ns: Path
    address: str
    port: int
    listen_port: int
    seen_as: str


def _echo(conn: socket.socket, requests: int) -> None:
    for _ in range(requests):
        if not conn.recv(1):
            return
        conn.sendall(b"y")


def latencies_us(routes: Mapping[str, Route], requests: int) -> dict[str, float]:
    """The median request round trip of each route (microseconds): 1-byte request, 1-byte
    answer, one at a time. ROUNDS rounds of `requests` / ROUNDS requests per route, each on
    new connections and server threads, the routes taking turns by blocks of BLOCK requests
    (a load that comes and goes, such as another lab on this host, weighs on all alike);
    the figure is the median of the rounds' medians. Clients, servers and the kernel's work
    for them all run on one CPU: waking a thread on another, idle, virtual CPU costs tens of
    microseconds here and would depend on where the scheduler put each thread. Before its
    connection is timed, each server checks whom it sees (SystemExit when not `seen_as`)."""
    per_round = max(1, requests // ROUNDS)
    found: dict[str, list[float]] = {name: [] for name in routes}
    with one_cpu():
        for _ in range(ROUNDS):
            for name, median in _round(routes, per_round).items():
                found[name].append(median)
    return {name: statistics.median(medians) for name, medians in found.items()}


@contextlib.contextmanager
def one_cpu() -> Iterator[None]:
    """The calling thread, and the threads it starts meanwhile, on one CPU."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def _round(routes: Mapping[str, Route], requests: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in routes}
    with contextlib.ExitStack() as stack:
        listeners: dict[tuple[Path, int], socket.socket] = {}
        clients: dict[str, socket.socket] = {}
        echoes: list[_Thread] = []
        for name, route in routes.items():
            key = (route.server_ns, route.listen_port)
            if key not in listeners:
                listeners[key] = stack.enter_context(listen(*key))
            client = stack.enter_context(tcp_client(route.client_ns))
            client.connect((route.address, route.port))
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn, peer = listeners[key].accept()  # this client's: connected one at a time
            stack.enter_context(conn)
            if peer[0] != route.seen_as:
                raise SystemExit(
                    f"{name}: the server saw the client as {peer[0]}, not as {route.seen_as}"
                )
            conn.settimeout(TIMEOUT_S)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            echoes.append(_Thread(partial(_echo, conn, requests)))
            clients[name] = client
        deadline = time.perf_counter() + MAX_ROUND_S
        for first in range(0, requests, BLOCK):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{requests} requests per route took too long")
            for name, client in clients.items():
                for _ in range(min(BLOCK, requests - first)):
                    start = time.perf_counter()
                    client.sendall(b"x")
                    if client.recv(1) != b"y":
                        raise ConnectionError(f"{name}: the server closed the connection")
                    times[name].append((time.perf_counter() - start) * 1e6)
        for client in clients.values():
            client.shutdown(socket.SHUT_WR)
        for echo in echoes:
            echo.join()
    return {name: statistics.median(found) for name, found in times.items()}


class _Views:
    def names(self, network_ids: Sequence[str]) -> Records:
        return Records({"web": ["10.210.0.100"], "tasks.web": ["10.210.0.2", "10.210.0.3"]})

    def backends(self, network_ids: Sequence[str]) -> dict[str, list[str]]:
        return {}

    def sandboxes(self, network_id: str) -> list[str]:
        return []


def dns_ms(container_ns: Path, queries: int) -> float:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    discovery = Discovery(lambda: _Views(), upstreams=[])
    discovery.bind(loop)
    try:
        discovery.serve("bench", str(container_ns), ["net"])
        client = in_ns(container_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        query = dns.message.make_query("tasks.web", "A").to_wire()
        times = []
        with client:
            client.settimeout(2)
            for _ in range(queries):
                start = time.perf_counter()
                client.sendto(query, ("127.0.0.11", 53))
                client.recv(512)
                times.append((time.perf_counter() - start) * 1000)
        discovery.stop("bench")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
    return statistics.median(times)


# -- the routing mesh ----------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A lab machine as an agent sees it: its engine's state (bridge, ingress overlay and
    sandbox) under a directory of the machine's own."""

    machine: Machine

    @property
    def address(self) -> str:
        return self.machine.record.ip

    @property
    def config(self) -> EngineConfig:
        return EngineConfig(root=self.machine.state_dir / "bench-engine")

    @property
    def sandbox(self) -> Path:
        return ingress.sandbox_path(self.config.network_dir)

    def bridge(self) -> BridgeNetwork:
        return BridgeNetwork(self.config)

    def ingress(self) -> OverlayNetwork:
        spec = OverlaySpec(
            INGRESS_ID, INGRESS_VNI, INGRESS_SUBNET, INGRESS_GATEWAY, IPv4Address(self.address)
        )
        return OverlayNetwork(self.config.network_dir / "overlay" / INGRESS_ID, spec)

    def make_sandbox(self, address: IPv4Address) -> str:
        """The ingress sandbox as agent.ingress.IngressMesh._make makes it (call in the
        node's namespace); its bridge address."""
        ingress.ensure_sandbox(self.sandbox)
        self.ingress().attach(
            ingress.SANDBOX_ID, str(self.sandbox), address, ingress.OVERLAY_IFNAME
        )
        bridge = self.bridge()
        on_bridge = bridge.attachment(ingress.SANDBOX_ID)
        if on_bridge is None:
            on_bridge = bridge.attach(
                ingress.SANDBOX_ID, str(self.sandbox), (), ingress.BRIDGE_IFNAME
            )
        return on_bridge.ip


def sandbox_address(index: int) -> IPv4Address:
    """Node `index`'s address on the ingress network (10.211.0.2, .3, ...)."""
    return INGRESS_GATEWAY + 1 + index


def build_mesh(nodes: Sequence[Node], task_node: Node, task_ns: Path) -> None:
    """The task on `task_node` (ingress overlay eth0, bridge eth1 with the host-mode port),
    every node's sandbox and published port, the overlay's peers and the task's return
    paths, as the agents of a cluster would set them."""
    namespaces.create_bound(task_ns, libc.CLONE_NEWNET)

    def plug_task() -> None:
        task_node.ingress().attach(TASK_ID, str(task_ns), TASK_ADDRESS, "eth0")
        host_mode = [parse_port(f"{HOST_PORT}:{TASK_PORT}")]
        task_node.bridge().attach(TASK_ID, str(task_ns), host_mode, "eth1")

    in_machine(task_node.machine, plug_task)
    on_bridge = []
    for index, node in enumerate(nodes):
        on_bridge.append(
            in_machine(node.machine, partial(node.make_sandbox, sandbox_address(index)))
        )
    peers = [Peer(TASK_ADDRESS, mac_for(TASK_ADDRESS), IPv4Address(task_node.address))]
    for index, node in enumerate(nodes):
        address = sandbox_address(index)
        peers.append(Peer(address, mac_for(address), IPv4Address(node.address)))
    backends = {ingress.Published("tcp", MESH_PORT, TASK_PORT): [str(TASK_ADDRESS)]}
    for node, bridge_ip in zip(nodes, on_bridge, strict=True):
        in_machine(node.machine, partial(node.ingress().set_peers, peers))
        in_machine(node.machine, partial(ingress.program, node.sandbox, bridge_ip, backends))
    sandboxes = sorted(str(sandbox_address(i)) for i in range(len(nodes)))
    ingress.program_return_paths(task_ns, "eth0", sandboxes)


def remove_mesh(nodes: Sequence[Node], task_ns: Path, errors: list[str]) -> None:
    """Undo `build_mesh`, every step tried (what fails is added to `errors`); the nodes'
    state directories go."""
    for node in nodes:
        steps: list[tuple[str, Callable[[], object]]] = [
            ("unpublish", ingress.unpublish),
            ("remove the ingress overlay", node.ingress().remove),
            ("tear the bridge down", node.bridge().teardown_all),
            ("remove the sandbox", partial(ingress.remove_sandbox, node.sandbox)),
        ]
        for what, step in steps:
            attempt(errors, f"{node.machine.name}: {what}", partial(in_machine, node.machine, step))
    attempt(errors, "remove the task's namespace", partial(namespaces.remove_bound, task_ns))
    for node in nodes:
        attempt(errors, f"remove {node.config.root}", partial(shutil.rmtree, node.config.root))


def attempt(errors: list[str], what: str, work: Callable[[], object]) -> None:
    """`work()`; its failure noted in `errors`, not raised (clean-up goes on)."""
    try:
        work()
    except FileNotFoundError:
        pass
    except Exception as exc:
        errors.append(f"{what}: {exc!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput, in all")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    lab, name = Lab(), f"bov{int(time.time()) % 100000}"
    status = lab.up(name, 2)
    machines = [lab.machine(m["name"]) for m in status["machines"]]
    nodes = [Node(machine) for machine in machines]
    a, b = nodes
    task_ns = b.config.root / "task-ns"
    containers: list[Path] = []
    overlays: list[OverlayNetwork] = []
    errors: list[str] = []
    try:
        endpoints = []
        for index, machine in enumerate(machines):
            local = IPv4Address(machine.record.ip)
            spec = OverlaySpec("bench", 4242, SUBNET, GATEWAY, local)
            overlay = OverlayNetwork(machine.state_dir / "overlay-bench", spec)
            overlays.append(overlay)
            ns = machine.state_dir / "container-ns"
            namespaces.create_bound(ns, libc.CLONE_NEWNET)
            containers.append(ns)
            address = IPv4Address(f"10.210.0.{index + 2}")
            with namespaces.entered_netns(machine.name):
                overlay.attach(f"c{index}", str(ns), address)
            endpoints.append(Peer(address, mac_for(address), local))
        for machine, overlay in zip(machines, overlays, strict=True):
            with namespaces.entered_netns(machine.name):
                overlay.set_peers(endpoints)
        build_mesh(nodes, b, task_ns)
        # Underlay and overlay take turns, a short run each, so that what else the machine
        # does weighs on both alike; the ratio is the median of the rounds' ratios.
        under_runs, over_runs = [], []
        for _ in range(THROUGHPUT_ROUNDS):
            share = args.seconds / THROUGHPUT_ROUNDS
            under_runs.append(throughput_gbits(b.machine.netns, a.machine.netns, b.address, share))
            over_runs.append(throughput_gbits(containers[1], containers[0], "10.210.0.3", share))
        under_gbit, over_gbit = statistics.median(under_runs), statistics.median(over_runs)
        throughput_ratio = statistics.median(
            o / u for o, u in zip(over_runs, under_runs, strict=True)
        )
        a_ns, b_ns = a.machine.netns, b.machine.netns
        c0, c1 = containers
        us = latencies_us(
            {
                "underlay": Route(a_ns, b_ns, b.address, ECHO_PORT, ECHO_PORT, a.address),
                "overlay": Route(c0, c1, "10.210.0.3", ECHO_PORT, ECHO_PORT, "10.210.0.2"),
                "host": Route(a_ns, task_ns, b.address, HOST_PORT, TASK_PORT, a.address),
                "mesh": Route(a_ns, task_ns, b.address, MESH_PORT, TASK_PORT, a.address),
                "cross": Route(b_ns, task_ns, a.address, MESH_PORT, TASK_PORT, b.address),
                "local": Route(a_ns, task_ns, a.address, MESH_PORT, TASK_PORT, a.address),
            },
            args.requests,
        )
        dns_median = dns_ms(containers[0], args.requests // 4)
    finally:
        remove_mesh(nodes, task_ns, errors)
        for machine, overlay in zip(machines, overlays, strict=False):
            remove = partial(in_machine, machine, overlay.remove)
            attempt(errors, f"{machine.name}: remove the overlay", remove)
        for ns in containers:
            attempt(errors, f"remove {ns}", partial(namespaces.remove_bound, ns))
        lab.down(name)
        for error in errors:
            print(f"clean-up: {error}", file=sys.stderr)
    print(
        f"TCP throughput, one connection:  underlay {under_gbit:.2f} Gbit/s, "
        f"overlay {over_gbit:.2f} Gbit/s"
    )
    print(
        f"request round trip (median):     underlay {us['underlay']:.0f} us, "
        f"overlay {us['overlay']:.0f} us"
    )
    print(
        f"published port, round trip (median): host mode {us['host']:.0f} us "
        f"(A -> B:{HOST_PORT}), mesh {us['mesh']:.0f} us (A -> B:{MESH_PORT}), "
        f"via the other node {us['cross']:.0f} us (B -> A:{MESH_PORT}), "
        f"from the node itself {us['local']:.0f} us (A -> A:{MESH_PORT})"
    )
    print(f"DNS answer at 127.0.0.11 (median): {dns_median:.3f} ms")
    print(
        f"throughput_vs_underlay={throughput_ratio:.3f} "
        f"latency_vs_underlay={us['overlay'] / us['underlay']:.3f} "
        f"mesh_vs_host={us['mesh'] / us['host']:.3f} dns_ms={dns_median:.3f} "
        f"mesh_cross_vs_host={us['cross'] / us['host']:.3f}"
    )


if __name__ == "__main__":
    if sys.platform != "linux":
        raise SystemExit("Linux only")
    main()
