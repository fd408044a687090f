"""What the dispatcher follows of the cluster: the managers agents may connect to, the
cluster object (heartbeat period, root CA, network keys), and how many nodes are in each
state (the shoal_manager_nodes metric)."""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import TypeAlias

from manager.dispatcher import metrics
from shoal.v1 import objects_pb2, types_pb2

# Every manager is offered with the same weight (SwarmKit's default observation weight);
# unreachable ones are offered last.
MANAGER_WEIGHT = 10
UNREACHABLE_WEIGHT = 1

NodeState: TypeAlias = types_pb2.NodeStatus.State.ValueType


def _state_label(state: NodeState) -> str:
    return types_pb2.NodeStatus.State.Name(state).lower()


def _peer(node: objects_pb2.Node) -> types_pb2.WeightedPeer | None:
    if node.role != types_pb2.MANAGER or not node.manager_status.addr:
        return None
    unreachable = node.manager_status.reachability == types_pb2.RaftMemberStatus.UNREACHABLE
    return types_pb2.WeightedPeer(
        peer=types_pb2.Peer(node_id=node.id, addr=node.manager_status.addr),
        weight=UNREACHABLE_WEIGHT if unreachable else MANAGER_WEIGHT,
    )


class ClusterView:
    def __init__(
        self, nodes: Iterable[objects_pb2.Node], cluster: objects_pb2.Cluster | None
    ) -> None:
        self.cluster = cluster
        self._managers: dict[str, types_pb2.WeightedPeer] = {}
        self._states: dict[str, NodeState] = {}
        self._counts: collections.Counter[NodeState] = collections.Counter()
        for node in nodes:
            self.node_changed(node)
        for state in types_pb2.NodeStatus.State.values():
            metrics.NODES.labels(state=_state_label(state)).set(self._counts[state])

    def node_changed(self, node: objects_pb2.Node) -> bool:
        """Record `node`; True when the managers offered to agents changed."""
        self._set_state(node.id, node.status.state)
        peer = _peer(node)
        if peer == self._managers.get(node.id):
            return False
        if peer is None:
            del self._managers[node.id]
        else:
            self._managers[node.id] = peer
        return True

    def node_removed(self, node_id: str) -> bool:
        self._set_state(node_id, None)
        return self._managers.pop(node_id, None) is not None

    def cluster_changed(self, cluster: objects_pb2.Cluster | None) -> bool:
        """Record the cluster object; True when what sessions carry of it changed."""
        before = self.root_ca, list(self.network_keys)
        self.cluster = cluster
        return (self.root_ca, list(self.network_keys)) != before

    def managers(self) -> list[types_pb2.WeightedPeer]:
        return [self._managers[node_id] for node_id in sorted(self._managers)]

    @property
    def root_ca(self) -> bytes:
        return self.cluster.root_ca.ca_cert if self.cluster is not None else b""

    @property
    def network_keys(self) -> Iterable[types_pb2.EncryptionKey]:
        return self.cluster.network_bootstrap_keys if self.cluster is not None else ()

    def _set_state(self, node_id: str, state: NodeState | None) -> None:
        """Keep the count of nodes per state, and shoal_manager_nodes{state}, current."""
        old = self._states.pop(node_id, None)
        if old == state:
            if state is not None:
                self._states[node_id] = state
            return
        if old is not None:
            self._counts[old] -= 1
            metrics.NODES.labels(state=_state_label(old)).set(self._counts[old])
        if state is not None:
            self._states[node_id] = state
            self._counts[state] += 1
            metrics.NODES.labels(state=_state_label(state)).set(self._counts[state])

    @staticmethod
    def unpublish() -> None:
        """Zero shoal_manager_nodes: only the leader's dispatcher reports nodes."""
        for state in types_pb2.NodeStatus.State.values():
            metrics.NODES.labels(state=_state_label(state)).set(0)
