"""Every task on the overlay networks one node serves, as that node must hear it.

A node that runs a task on an overlay network gets, with its assignments, the network's
NetworkEndpoints: every task on the network that is on a node and not yet stopped, with its
address, the address of the node that runs it, and the names it answers to. The node
programs its VXLAN forwarding from the other nodes' entries, and its DNS resolver and
virtual-IP load balancing from all of them. The set starts from a read view and follows
task and node events; a network's endpoints are sent again (UPDATE) whenever they change,
and taken back (REMOVE) once no task of the node uses the network any more.
"""

from __future__ import annotations

from common.naming import task_name
from manager.allocator.networks import is_overlay
from manager.store import ReadTx
from shoal.v1 import dispatcher_pb2, objects_pb2, types_pb2

UPDATE = dispatcher_pb2.AssignmentChange.UPDATE
REMOVE = dispatcher_pb2.AssignmentChange.REMOVE
Endpoint = dispatcher_pb2.NetworkEndpoints.Endpoint


def is_endpoint(task: objects_pb2.Task) -> bool:
    """On a node and not yet stopped: its address is in use there."""
    return bool(task.node_id) and types_pb2.ASSIGNED <= task.status.state <= types_pb2.RUNNING


def _without_prefix(address: str) -> str:
    return address.split("/", 1)[0]


def endpoints_of(task: objects_pb2.Task) -> dict[str, Endpoint]:
    """Network id -> the task's endpoint on each overlay network it is attached to (node
    address left for the caller)."""
    vips = {v.network_id: _without_prefix(v.addr) for v in task.endpoint.virtual_ips}
    dnsrr = task.endpoint.spec.mode == types_pb2.EndpointSpec.DNSRR
    found = {}
    for attachment in task.networks:
        network = attachment.network
        if not is_overlay(network) or not attachment.addresses:
            continue
        found[network.id] = Endpoint(
            task_id=task.id,
            address=_without_prefix(attachment.addresses[0]),
            node_id=task.node_id,
            service_id=task.service_id,
            service_name=task.service_annotations.name,
            task_name=task_name(
                task.annotations.name,
                task.service_annotations.name,
                task.service_id,
                task.slot,
                task.node_id,
                task.id,
            ),
            vip="" if dnsrr else vips.get(network.id, ""),
            aliases=list(attachment.aliases),
            running=task.status.state == types_pb2.RUNNING,
            ports=[p for p in task.endpoint.ports if p.publish_mode == types_pb2.PortConfig.INGRESS]
            if network.spec.ingress
            else [],
        )
    return found


def _change(
    action: int, endpoints: dispatcher_pb2.NetworkEndpoints
) -> dispatcher_pb2.AssignmentChange:
    return dispatcher_pb2.AssignmentChange(
        assignment=dispatcher_pb2.Assignment(network_endpoints=endpoints),
        action=action,  # type: ignore[arg-type]
    )


class NetworkEndpointSet:
    """The endpoints of the overlay networks node `node_id` serves."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._members: dict[str, dict[str, Endpoint]] = {}  # network -> task id -> endpoint
        self._task_networks: dict[str, list[str]] = {}  # task id -> its networks
        self._node_addresses: dict[str, str] = {}
        # node id -> (network id, its own endpoint there): the routing mesh's ends
        self._node_endpoints: dict[str, tuple[str, Endpoint]] = {}
        self._sent: dict[str, dispatcher_pb2.NetworkEndpoints] = {}

    def load(self, tx: ReadTx) -> None:
        for node in tx.list(objects_pb2.Node):
            self.node(node)
        for task in tx.list(objects_pb2.Task):
            self.task(task.id, task)

    def task(self, task_id: str, task: objects_pb2.Task | None) -> None:
        """A task as it is now (None: deleted)."""
        found = endpoints_of(task) if task is not None and is_endpoint(task) else {}
        for network_id in self._task_networks.pop(task_id, []):
            members = self._members.get(network_id, {})
            members.pop(task_id, None)
            if not members:
                self._members.pop(network_id, None)
        if found:
            self._task_networks[task_id] = list(found)
            for network_id, endpoint in found.items():
                self._members.setdefault(network_id, {})[task_id] = endpoint

    def node(self, node: objects_pb2.Node, deleted: bool = False) -> None:
        if deleted or not node.status.addr:
            self._node_addresses.pop(node.id, None)
        else:
            self._node_addresses[node.id] = node.status.addr
        self._node_endpoints.pop(node.id, None)
        if deleted:
            return
        for attachment in node.attachments:
            if is_overlay(attachment.network) and attachment.addresses:
                endpoint = Endpoint(
                    node_id=node.id,
                    address=_without_prefix(attachment.addresses[0]),
                    running=True,
                )
                self._node_endpoints[node.id] = (attachment.network.id, endpoint)

    def served(self) -> set[str]:
        """Overlay networks a task of this node is on, and the ingress network once the
        node has its own address there."""
        served = {
            network_id
            for network_id, members in self._members.items()
            if any(e.node_id == self.node_id for e in members.values())
        }
        own = self._node_endpoints.get(self.node_id)
        if own is not None:
            served.add(own[0])
        return served

    def _endpoints(self, network_id: str) -> dispatcher_pb2.NetworkEndpoints:
        message = dispatcher_pb2.NetworkEndpoints(network_id=network_id)
        nodes = [e for _, (n, e) in sorted(self._node_endpoints.items()) if n == network_id]
        for endpoint in [
            *(e for _, e in sorted(self._members.get(network_id, {}).items())),
            *nodes,
        ]:
            node_address = self._node_addresses.get(endpoint.node_id)
            if node_address:  # a node that never registered cannot be reached yet
                added = message.endpoints.add()
                added.CopyFrom(endpoint)
                added.node_address = node_address
        return message

    def complete(self) -> list[dispatcher_pb2.AssignmentChange]:
        """Every served network's endpoints (a COMPLETE message); what was sent is reset."""
        self._sent = {n: self._endpoints(n) for n in sorted(self.served())}
        return [_change(UPDATE, endpoints) for endpoints in self._sent.values()]

    def changes(self) -> list[dispatcher_pb2.AssignmentChange]:
        """What changed since the last call: networks whose endpoints differ, networks no
        longer served."""
        out = []
        served = self.served()
        for network_id in sorted(served):
            endpoints = self._endpoints(network_id)
            if self._sent.get(network_id) != endpoints:
                self._sent[network_id] = endpoints
                out.append(_change(UPDATE, endpoints))
        for network_id in sorted(self._sent.keys() - served):
            out.append(_change(REMOVE, self._sent.pop(network_id)))
        return out
