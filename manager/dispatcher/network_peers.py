"""Where each overlay network's endpoints run, as one node must hear it.

A node that runs a task on an overlay network gets, with its assignments, the network's
NetworkPeers: every task on the network on another node (its address there, and the
address of the node that runs it), so it can program its VXLAN forwarding statically.
The set starts from a read view and follows task and node events; a network's peers are
sent again (UPDATE) whenever they change, and taken back (REMOVE) once no task of the node
uses the network any more.
"""

from __future__ import annotations

from manager.allocator.networks import is_overlay
from manager.store import ReadTx
from shoal.v1 import dispatcher_pb2, objects_pb2, types_pb2

UPDATE = dispatcher_pb2.AssignmentChange.UPDATE
REMOVE = dispatcher_pb2.AssignmentChange.REMOVE
Member = tuple[str, str]  # (task's address on the network, node id)


def overlay_addresses(task: objects_pb2.Task) -> dict[str, str]:
    """Network id -> the task's address on each overlay network it is attached to."""
    found = {}
    for attachment in task.networks:
        if is_overlay(attachment.network) and attachment.addresses:
            found[attachment.network.id] = attachment.addresses[0].split("/", 1)[0]
    return found


def is_endpoint(task: objects_pb2.Task) -> bool:
    """On a node and not yet stopped: its address is in use there."""
    return bool(task.node_id) and types_pb2.ASSIGNED <= task.status.state <= types_pb2.RUNNING


def _change(action: int, peers: dispatcher_pb2.NetworkPeers) -> dispatcher_pb2.AssignmentChange:
    return dispatcher_pb2.AssignmentChange(
        assignment=dispatcher_pb2.Assignment(network_peers=peers),
        action=action,  # type: ignore[arg-type]
    )


class NetworkPeerSet:
    """The peers of the overlay networks node `node_id` serves."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._members: dict[str, dict[str, Member]] = {}  # network -> task id -> member
        self._task_networks: dict[str, dict[str, str]] = {}  # task id -> network -> address
        self._node_addresses: dict[str, str] = {}
        self._sent: dict[str, dispatcher_pb2.NetworkPeers] = {}

    def load(self, tx: ReadTx) -> None:
        for node in tx.list(objects_pb2.Node):
            self.node(node)
        for task in tx.list(objects_pb2.Task):
            self.task(task.id, task)

    def task(self, task_id: str, task: objects_pb2.Task | None) -> None:
        """A task as it is now (None: deleted)."""
        networks = overlay_addresses(task) if task is not None and is_endpoint(task) else {}
        old = self._task_networks.pop(task_id, {})
        for network_id in old:
            members = self._members.get(network_id, {})
            members.pop(task_id, None)
            if not members:
                self._members.pop(network_id, None)
        if networks and task is not None:
            self._task_networks[task_id] = networks
            for network_id, address in networks.items():
                self._members.setdefault(network_id, {})[task_id] = (address, task.node_id)

    def node(self, node: objects_pb2.Node, deleted: bool = False) -> None:
        if deleted or not node.status.addr:
            self._node_addresses.pop(node.id, None)
        else:
            self._node_addresses[node.id] = node.status.addr

    def served(self) -> set[str]:
        """Overlay networks a task of this node is on."""
        return {
            network_id
            for network_id, members in self._members.items()
            if any(node_id == self.node_id for _, node_id in members.values())
        }

    def _peers(self, network_id: str) -> dispatcher_pb2.NetworkPeers:
        message = dispatcher_pb2.NetworkPeers(network_id=network_id)
        for task_id, (address, node_id) in sorted(self._members.get(network_id, {}).items()):
            node_address = self._node_addresses.get(node_id)
            if node_id != self.node_id and node_address:
                message.peers.add(task_id=task_id, address=address, node_address=node_address)
        return message

    def complete(self) -> list[dispatcher_pb2.AssignmentChange]:
        """Every served network's peers (for a COMPLETE message); what was sent is reset."""
        self._sent = {n: self._peers(n) for n in sorted(self.served())}
        return [_change(UPDATE, peers) for peers in self._sent.values()]

    def changes(self) -> list[dispatcher_pb2.AssignmentChange]:
        """What changed since the last call: networks whose peers differ, networks no
        longer served."""
        out = []
        served = self.served()
        for network_id in sorted(served):
            peers = self._peers(network_id)
            if self._sent.get(network_id) != peers:
                self._sent[network_id] = peers
                out.append(_change(UPDATE, peers))
        for network_id in sorted(self._sent.keys() - served):
            out.append(_change(REMOVE, self._sent.pop(network_id)))
        return out
