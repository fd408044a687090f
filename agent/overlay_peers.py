"""The peers of the overlay networks this node's tasks are on, kept in the node's VXLAN
forwarding as the dispatcher sends them (NetworkPeers assignments).

A network's peers are programmed once both are known: its peers, and its allocation (VNI,
subnet), which comes with the tasks attached to it. The runtime records them even before a
container of the network runs here, so the first container finds its peers in place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from agent.container_spec import overlays
from agent.errors import TaskSpecError
from agent.executor import Executor
from runtime.container.spec import OverlayAttachment
from shoal.v1 import dispatcher_pb2, objects_pb2

log = logging.getLogger(__name__)


class OverlayPeers:
    def __init__(self, executor: Executor, data_address: str) -> None:
        self._executor = executor
        self._data_address = data_address
        self._networks: dict[str, OverlayAttachment] = {}  # network id -> its allocation
        self._peers: dict[str, dispatcher_pb2.NetworkPeers] = {}

    async def learn(self, tasks: Sequence[objects_pb2.Task]) -> None:
        """Networks the tasks are on; the peers of any seen for the first time programmed."""
        new = []
        for task in tasks:
            try:
                attachments = overlays(task, self._data_address)
            except TaskSpecError:
                continue  # the task's controller rejects it and says why
            for attachment in attachments:
                if attachment.network_id not in self._networks:
                    new.append(attachment.network_id)
                self._networks[attachment.network_id] = attachment
        for network_id in new:
            if network_id in self._peers:
                await self._program(network_id)

    async def apply(
        self,
        updated: Sequence[dispatcher_pb2.NetworkPeers],
        removed: Sequence[str],
        complete: bool = False,
    ) -> None:
        """Peers sent by the dispatcher; with `complete`, networks not in `updated` are of
        no more use here."""
        if complete:
            removed = [
                *removed,
                *(n for n in self._peers if n not in {u.network_id for u in updated}),
            ]
        for peers in updated:
            self._peers[peers.network_id] = peers
            await self._program(peers.network_id)
        for network_id in removed:
            if self._peers.pop(network_id, None) is not None:
                await self._program(network_id)
            self._networks.pop(network_id, None)

    async def _program(self, network_id: str) -> None:
        attachment = self._networks.get(network_id)
        if attachment is None:
            return  # programmed when a task brings the network's allocation
        sent = self._peers.get(network_id)
        pairs = [(p.address, p.node_address) for p in sent.peers] if sent is not None else []
        try:
            await self._executor.set_overlay_peers(attachment, pairs)
        except Exception as exc:  # the next update tries again; tasks report their own errors
            log.warning("overlay %s: cannot program its peers: %s", attachment.name, exc)
