"""Overlay networks against the underlay they run on, in one run on one topology.

A lab of two machines (network namespaces on the lab's switch, as `swarm-machine` makes
them); on each, a container's network namespace joined to one overlay network through
Shoal's data plane (runtime.network.overlay: a VXLAN device per node, static peers). The
same client and server code then measures, machine to machine over the underlay and
container to container over the overlay:

- TCP throughput: one connection, 1 MiB writes for a few seconds;
- request latency: 1-byte request, 1-byte answer, one at a time (median round trip);
- DNS: the embedded resolver's answer time at 127.0.0.11 inside the container (median),
  served by the agent's own code (agent.discovery) on an event loop of this process.

The routing mesh (ingress mode) is not built yet: `mesh_vs_host=na`. Everything lives in
namespaces this script creates and removes; run as root:

    .venv/bin/python benchmarks/overlay.py [--seconds S] [--requests N]

Last line: throughput_vs_underlay=… latency_vs_underlay=… mesh_vs_host=na dns_ms=… with
the absolute figures before it (Gbit/s, microseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import dns.message

from agent.discovery import Discovery
from common import libc, namespaces
from deploy.lab import Lab
from runtime.network.dns import Records
from runtime.network.ipam import mac_for
from runtime.network.overlay import OverlayNetwork, OverlaySpec
from runtime.network.vxlan import Peer

SUBNET = IPv4Network("10.210.0.0/24")
GATEWAY = IPv4Address("10.210.0.1")
PORT = 5201
CHUNK = 1 << 20


def in_ns(path: Path, make: Callable[[], socket.socket]) -> socket.socket:
    return namespaces.call_in_netns(path, make)


def throughput_gbits(server_ns: Path, client_ns: Path, address: str, seconds: float) -> float:
    server = in_ns(server_ns, lambda: socket.create_server(("0.0.0.0", PORT)))
    received = [0]

    def sink() -> None:
        conn, _ = server.accept()
        buffer = bytearray(CHUNK)
        with conn:
            while n := conn.recv_into(buffer):
                received[0] += n

    thread = threading.Thread(target=sink)
    thread.start()
    client = in_ns(client_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    payload = bytes(CHUNK)
    with client:
        client.connect((address, PORT))
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        thread.join()
        elapsed = time.perf_counter() - start
    server.close()
    return received[0] * 8 / elapsed / 1e9


def latency_us(server_ns: Path, client_ns: Path, address: str, requests: int) -> float:
    server = in_ns(server_ns, lambda: socket.create_server(("0.0.0.0", PORT + 1)))

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while conn.recv(1):
                conn.sendall(b"y")

    thread = threading.Thread(target=echo)
    thread.start()
    client = in_ns(client_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    times = []
    with client:
        client.connect((address, PORT + 1))
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(requests):
            start = time.perf_counter()
            client.sendall(b"x")
            client.recv(1)
            times.append((time.perf_counter() - start) * 1e6)
    thread.join()
    server.close()
    return statistics.median(times)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    lab, name = Lab(), f"bov{int(time.time()) % 100000}"
    status = lab.up(name, 2)
    machines = [lab.machine(m["name"]) for m in status["machines"]]
    containers: list[Path] = []
    overlays: list[OverlayNetwork] = []
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
        a, b = machines
        under_gbit = throughput_gbits(b.netns, a.netns, b.record.ip, args.seconds)
        over_gbit = throughput_gbits(containers[1], containers[0], "10.210.0.3", args.seconds)
        under_us = latency_us(b.netns, a.netns, b.record.ip, args.requests)
        over_us = latency_us(containers[1], containers[0], "10.210.0.3", args.requests)
        dns_median = dns_ms(containers[0], args.requests // 4)
    finally:
        for machine, overlay in zip(machines, overlays, strict=False):
            with namespaces.entered_netns(machine.name):
                overlay.remove()
        for ns in containers:
            namespaces.remove_bound(ns)
        lab.down(name)
    print(
        f"TCP throughput, one connection:  underlay {under_gbit:.2f} Gbit/s, "
        f"overlay {over_gbit:.2f} Gbit/s"
    )
    print(f"request round trip (median):     underlay {under_us:.0f} us, overlay {over_us:.0f} us")
    print(f"DNS answer at 127.0.0.11 (median): {dns_median:.3f} ms")
    print("routing mesh: not built yet")
    print(
        f"throughput_vs_underlay={over_gbit / under_gbit:.3f} "
        f"latency_vs_underlay={over_us / under_us:.3f} mesh_vs_host=na dns_ms={dns_median:.3f}"
    )


if __name__ == "__main__":
    if sys.platform != "linux":
        raise SystemExit("Linux only")
    main()
