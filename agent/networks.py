"""The overlay networks this node's tasks are on, kept in line with their endpoints as the
dispatcher sends them (NetworkEndpoints assignments): the other nodes' tasks become the
node's VXLAN forwarding entries (its peers).

A network's peers are programmed once both are known: its endpoints, and its allocation
(VNI, subnet), which comes with the tasks attached to it. The runtime records them even
before a container of the network runs here, so the first container finds them in place.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from agent.container_spec import overlays
from agent.errors import TaskSpecError
from agent.executor import Executor
from runtime.container.spec import OverlayAttachment
from runtime.network.dns import Records
from shoal.v1 import dispatcher_pb2, objects_pb2

log = logging.getLogger(__name__)


class OverlayNetworks:
    def __init__(
        self,
        executor: Executor,
        node_id: str,
        data_address: str,
        changed: Callable[[Sequence[str]], Awaitable[None]] | None = None,
    ) -> None:
        """`changed(network_ids)`: called after the endpoints of those networks changed."""
        self._executor = executor
        self._changed = changed
        self._node_id = node_id
        self._data_address = data_address
        self._networks: dict[str, OverlayAttachment] = {}  # network id -> its allocation
        self._endpoints: dict[str, dispatcher_pb2.NetworkEndpoints] = {}

    async def learn(self, tasks: Sequence[objects_pb2.Task]) -> None:
        """Networks the tasks are on; the peers of any seen for the first time programmed."""
        for task in tasks:
            try:
                attachments = overlays(task, self._data_address)
            except TaskSpecError:
                continue  # the task's controller rejects it and says why
            for attachment in attachments:
                await self.know(attachment)

    async def know(self, attachment: OverlayAttachment) -> None:
        """A network's allocation (from a task, or the node's own ingress address); its
        peers are programmed when it is new here."""
        new = attachment.network_id not in self._networks
        self._networks[attachment.network_id] = attachment
        if new and attachment.network_id in self._endpoints:
            await self._program(attachment.network_id)

    def endpoints(self, network_id: str) -> dispatcher_pb2.NetworkEndpoints | None:
        """The network's endpoints as the dispatcher last sent them."""
        return self._endpoints.get(network_id)

    async def apply(
        self,
        updated: Sequence[dispatcher_pb2.NetworkEndpoints],
        removed: Sequence[str],
        complete: bool = False,
    ) -> None:
        """Peers sent by the dispatcher; with `complete`, networks not in `updated` are of
        no more use here."""
        if complete:
            removed = [
                *removed,
                *(n for n in self._endpoints if n not in {u.network_id for u in updated}),
            ]
        for peers in updated:
            self._endpoints[peers.network_id] = peers
            await self._program(peers.network_id)
        for network_id in removed:
            if self._endpoints.pop(network_id, None) is not None:
                await self._program(network_id)
            self._networks.pop(network_id, None)
        if self._changed is not None and (updated or removed):
            await self._changed([*(u.network_id for u in updated), *removed])

    async def _program(self, network_id: str) -> None:
        attachment = self._networks.get(network_id)
        if attachment is None:
            return  # programmed when a task brings the network's allocation
        sent = self._endpoints.get(network_id)
        pairs = [
            (e.address, e.node_address)
            for e in (sent.endpoints if sent is not None else ())
            if e.node_id != self._node_id
        ]
        try:
            await self._executor.set_overlay_peers(attachment, pairs)
        except Exception as exc:  # the next update tries again; tasks report their own errors
            log.warning("overlay %s: cannot program its peers: %s", attachment.name, exc)

    def names(self, network_ids: Sequence[str]) -> Records:
        """What a container on `network_ids` (in its interfaces' order) can resolve: each
        task's name, each service's name and aliases (its virtual IP, or its tasks'
        addresses in DNS round-robin mode), and `tasks.<service>`. A name defined on an
        earlier network wins over the same name on a later one."""
        found: dict[str, list[str]] = {}
        for network_id in network_ids:
            sent = self._endpoints.get(network_id)
            if sent is not None:
                for name, addresses in names_on(sent).items():
                    found.setdefault(name, addresses)
        return Records(found)

    def backends(self, network_ids: Sequence[str]) -> dict[str, list[str]]:
        """Virtual IP -> running task addresses, of the services on these networks."""
        found: dict[str, list[str]] = {}
        for network_id in network_ids:
            sent = self._endpoints.get(network_id)
            for endpoint in sent.endpoints if sent is not None else ():
                if endpoint.vip:
                    addresses = found.setdefault(endpoint.vip, [])
                    if endpoint.running and endpoint.address not in addresses:
                        addresses.append(endpoint.address)
        return found

    def sandboxes(self, network_id: str) -> list[str]:
        """The nodes' routing-mesh sandboxes on this network (the ingress network's
        endpoints that are no task)."""
        sent = self._endpoints.get(network_id)
        return [e.address for e in (sent.endpoints if sent is not None else ()) if not e.task_id]


def names_on(network: dispatcher_pb2.NetworkEndpoints) -> dict[str, list[str]]:
    """The DNS names of one network's running endpoints."""
    names: dict[str, list[str]] = {}

    def add(name: str, address: str) -> None:
        addresses = names.setdefault(name.lower(), [])
        if address not in addresses:
            addresses.append(address)

    for endpoint in network.endpoints:
        if not endpoint.running:
            continue
        add(endpoint.task_name, endpoint.address)
        if not endpoint.service_name:
            continue
        add(f"tasks.{endpoint.service_name}", endpoint.address)
        for name in (endpoint.service_name, *endpoint.aliases):
            add(name, endpoint.vip or endpoint.address)
    return names
