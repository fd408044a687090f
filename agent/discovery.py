"""Service discovery inside this node's containers on overlay networks: the embedded DNS
resolver at 127.0.0.11 and virtual-IP load balancing; and, for tasks on the ingress
network, the routing mesh's return paths (runtime.network.ingress: answers go back through
the node the client came in by).

The engine asks for both while a container starts (runtime.engine_factory.Resolver):
sockets are opened in the container's namespace (runtime.network.dns) and served on the
agent's event loop from then on, so no process runs per container, and the container's
virtual-IP rules are written (runtime.network.service_lb). Names and rules come from the
container's networks as the dispatcher last sent them (`Views`); whenever a network's
endpoints change, the rules of every container on it follow (`refresh`). Names that are not
the networks' are forwarded to the node's own resolvers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from common.namespaces import open_netns
from runtime.container.spec import interface_name
from runtime.network import dns, ingress, service_lb

log = logging.getLogger(__name__)

FORWARD_TIMEOUT_S = 2.0
CALL_TIMEOUT_S = 10.0  # for the engine's thread waiting on the event loop
MAX_MESSAGE = 65535


class Views(Protocol):
    """What the containers of some networks see (agent.networks.OverlayNetworks)."""

    def names(self, network_ids: Sequence[str]) -> dns.Records: ...

    def backends(self, network_ids: Sequence[str]) -> dict[str, list[str]]: ...

    def sandboxes(self, network_id: str) -> list[str]: ...


def return_paths(views: Views, network_ids: Sequence[str]) -> dict[str, list[str]]:
    """Interface -> the nodes' ingress sandboxes, for a container on these networks (only
    the ingress network has sandboxes)."""
    found: dict[str, list[str]] = {}
    for index, network_id in enumerate(network_ids):
        sandboxes = views.sandboxes(network_id)
        if sandboxes:
            found[interface_name(index)] = sorted(sandboxes)
    return found


def program_return_paths(netns_fd: int, paths: dict[str, list[str]]) -> None:
    for ifname, sandboxes in paths.items():
        ingress.program_return_paths(netns_fd, ifname, sandboxes)


@dataclass
class _Served:
    network_ids: list[str]
    netns_fd: int  # kept open: rules are rewritten inside the namespace as tasks change
    udp: socket.socket
    tcp: socket.socket
    backends: dict[str, list[str]]
    return_paths: dict[str, list[str]]
    transports: list[asyncio.BaseTransport] = field(default_factory=list)
    server: asyncio.Server | None = None

    def close(self) -> None:
        for transport in self.transports:
            transport.close()
        if self.server is not None:
            self.server.close()
        dns.close_all(self.udp, self.tcp)
        with contextlib.suppress(OSError):
            os.close(self.netns_fd)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, discovery: Discovery, container_id: str) -> None:
        self.discovery = discovery
        self.container_id = container_id
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.discovery.spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = await self.discovery.answer(self.container_id, data)
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)


class Discovery:
    """`views()` gives what containers of given networks see (late-bound: the agent makes
    its networks after the engine that needs this)."""

    def __init__(self, views: Callable[[], Views], upstreams: Sequence[str] | None = None) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._views = views
        self._upstreams = list(dns.node_resolvers() if upstreams is None else upstreams)
        self._served: dict[str, _Served] = {}
        self._work: set[asyncio.Task[None]] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve on `loop` (the agent's, once it runs)."""
        self._loop = loop

    # -- from the engine's threads -------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            raise RuntimeError("the agent's resolver is not running")
        return self._loop

    def serve(self, container_id: str, netns_path: str, network_ids: Sequence[str]) -> None:
        fd = open_netns(netns_path)
        try:
            udp, tcp = dns.open_sockets(fd)
        except BaseException:
            os.close(fd)
            raise
        views = self._views()
        backends = views.backends(network_ids)
        paths = return_paths(views, network_ids)
        served = _Served(list(network_ids), fd, udp, tcp, backends, paths)
        try:
            dns.redirect(fd, udp.getsockname()[1])
            service_lb.program(fd, backends)
            program_return_paths(fd, paths)
            started = asyncio.run_coroutine_threadsafe(
                self._start(container_id, served), self._running_loop()
            )
        except BaseException:
            served.close()
            raise
        started.result(CALL_TIMEOUT_S)

    def stop(self, container_id: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has stopped: nothing is served
            asyncio.run_coroutine_threadsafe(self._stop(container_id), self._running_loop()).result(
                CALL_TIMEOUT_S
            )

    # -- on the event loop ---------------------------------------------------------------

    async def _start(self, container_id: str, served: _Served) -> None:
        await self._stop(container_id)  # a restarted container: its old sockets go
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Datagrams(self, container_id), sock=served.udp
        )
        served.transports.append(transport)
        served.server = await asyncio.start_server(
            lambda r, w: self._stream(container_id, r, w), sock=served.tcp
        )
        self._served[container_id] = served

    async def _stop(self, container_id: str) -> None:
        served = self._served.pop(container_id, None)
        if served is not None:
            served.close()

    async def refresh(self, network_ids: Sequence[str]) -> None:
        """The endpoints of these networks changed: every container on one of them gets
        its virtual-IP rules and return paths again, where they differ."""
        changed = set(network_ids)
        for container_id, served in list(self._served.items()):
            if not changed & set(served.network_ids):
                continue
            views = self._views()
            backends = views.backends(served.network_ids)
            paths = return_paths(views, served.network_ids)
            try:
                if backends != served.backends:
                    await asyncio.to_thread(service_lb.program, served.netns_fd, backends)
                    served.backends = backends
                if paths != served.return_paths:
                    await asyncio.to_thread(program_return_paths, served.netns_fd, paths)
                    served.return_paths = paths
            except Exception as exc:  # the container may have just ended; logged, retried
                log.warning("container %s: networks not updated: %s", container_id[:12], exc)

    async def close(self) -> None:
        for container_id in list(self._served):
            await self._stop(container_id)
        for task in list(self._work):
            task.cancel()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def answer(self, container_id: str, query: bytes) -> bytes | None:
        served = self._served.get(container_id)
        if served is None:
            return None
        answer = dns.respond(query, self._views().names(served.network_ids))
        if answer is not None:
            return answer
        return await asyncio.to_thread(self._forward, query)

    def _forward(self, query: bytes) -> bytes | None:
        for upstream in self._upstreams:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(FORWARD_TIMEOUT_S)
                    sock.sendto(query, (upstream, dns.DNS_PORT))
                    reply, _ = sock.recvfrom(MAX_MESSAGE)
                    if reply[:2] == query[:2]:  # the same query id
                        return reply
            except OSError:
                continue
        return dns.servfail(query)

    async def _stream(
        self, container_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                answer = await self.answer(container_id, await reader.readexactly(length))
                if answer is None:
                    break
                writer.write(struct.pack("!H", len(answer)) + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
