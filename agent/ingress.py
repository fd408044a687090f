"""This node's end of the routing mesh (runtime.network.ingress): its ingress sandbox, made
once the managers gave the node an address on the ingress network, and the node's published
ingress ports spread over their services' running tasks, kept in line with the ingress
network's endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path

from agent.container_spec import overlay_attachment
from agent.errors import TaskSpecError
from agent.executor import Executor
from agent.networks import OverlayNetworks
from runtime.config import EngineConfig
from runtime.container.spec import OverlayAttachment
from runtime.engine_factory import LazyNetworks
from runtime.network import ingress
from runtime.network.bridge import BridgeNetwork
from shoal.v1 import objects_pb2, types_pb2

log = logging.getLogger(__name__)

PROTOCOLS = {types_pb2.PortConfig.TCP: "tcp", types_pb2.PortConfig.UDP: "udp"}


def own_ingress(node: objects_pb2.Node, data_address: str) -> OverlayAttachment | None:
    """The node's place on the ingress network, if the managers gave it one."""
    for attachment in node.attachments:
        if attachment.network.spec.ingress:
            try:
                return overlay_attachment(attachment, data_address)
            except TaskSpecError as exc:
                log.warning("routing mesh: %s", exc)
    return None


class IngressMesh:
    def __init__(
        self,
        executor: Executor,
        config: EngineConfig,
        overlays: OverlayNetworks,
        data_address: str,
    ) -> None:
        self._executor = executor
        self._config = config
        self._overlays = overlays
        self._data_address = data_address
        self._attachment: OverlayAttachment | None = None
        self._sandbox_ip = ""
        self._programmed: dict[ingress.Published, list[str]] | None = None
        self._lock = asyncio.Lock()

    async def node(self, node: objects_pb2.Node) -> None:
        """This node's object, as each session message brings it."""
        wanted = own_ingress(node, self._data_address)
        async with self._lock:
            if wanted == self._attachment:
                return
            try:
                if wanted is None:
                    await self._executor.run(self._remove)
                else:
                    await self._overlays.know(wanted)
                    self._sandbox_ip = await self._executor.run(self._make, wanted)
                self._attachment = wanted
                self._programmed = None
            except Exception as exc:  # tried again with the next session message
                log.warning("routing mesh: cannot set up this node's end: %s", exc)
                return
            await self._refresh()

    async def refresh(self, network_ids: Sequence[str]) -> None:
        """Endpoints of these networks changed."""
        if self._attachment is None or self._attachment.network_id not in network_ids:
            return
        async with self._lock:
            await self._refresh()

    async def _refresh(self) -> None:
        if self._attachment is None:
            return
        backends = self.backends(self._attachment.network_id)
        if backends == self._programmed:
            return
        try:
            await self._executor.run(ingress.program, self._sandbox(), self._sandbox_ip, backends)
        except Exception as exc:
            log.warning("routing mesh: cannot publish the ingress ports: %s", exc)
            return
        self._programmed = backends

    def backends(self, network_id: str) -> dict[ingress.Published, list[str]]:
        """Each published ingress port -> the running tasks behind it."""
        found: dict[ingress.Published, list[str]] = {}
        sent = self._overlays.endpoints(network_id)
        for endpoint in sent.endpoints if sent is not None else ():
            for port in endpoint.ports:
                protocol = PROTOCOLS.get(port.protocol)
                if protocol is None or not port.published_port:
                    continue
                key = ingress.Published(protocol, port.published_port, port.target_port)
                addresses = found.setdefault(key, [])
                if endpoint.running and endpoint.task_id and endpoint.address not in addresses:
                    addresses.append(endpoint.address)
        return found

    def _sandbox(self) -> Path:
        return ingress.sandbox_path(self._config.network_dir)

    def _make(self, attachment: OverlayAttachment) -> str:
        """The sandbox on the ingress network and the node's bridge; its bridge address."""
        path = self._sandbox()
        ingress.ensure_sandbox(path)
        LazyNetworks(self._config).overlay(attachment).attach(
            ingress.SANDBOX_ID, str(path), IPv4Address(attachment.address), ingress.OVERLAY_IFNAME
        )
        bridge = BridgeNetwork(self._config)
        on_bridge = bridge.attachment(ingress.SANDBOX_ID)
        if on_bridge is None:
            on_bridge = bridge.attach(ingress.SANDBOX_ID, str(path), (), ingress.BRIDGE_IFNAME)
        return on_bridge.ip

    def _remove(self) -> None:
        ingress.unpublish()
        if self._attachment is not None:
            LazyNetworks(self._config).overlay(self._attachment).detach(ingress.SANDBOX_ID)
        BridgeNetwork(self._config).detach(ingress.SANDBOX_ID)
        ingress.remove_sandbox(self._sandbox())
