"""All NodeInfos by node id, and the candidates for placement in a stable order."""

from __future__ import annotations

from collections.abc import Iterable

from manager.scheduler.node_info import NodeInfo, TaskUsage, consumes_resources
from shoal.v1 import objects_pb2


class NodeSet:
    def __init__(self) -> None:
        self._infos: dict[str, NodeInfo] = {}
        self._candidates: list[NodeInfo] | None = None

    @classmethod
    def build(cls, nodes: Iterable[objects_pb2.Node], tasks: Iterable[objects_pb2.Task]) -> NodeSet:
        """Node infos for `nodes`, with every task in `tasks` that holds resources accounted."""
        node_set = cls()
        for node in nodes:
            node_set.set_node(node)
        for task in tasks:
            if consumes_resources(task):
                node_set.add_task(task.id, task.node_id, TaskUsage.of(task))
        return node_set

    def __len__(self) -> int:
        return len(self._infos)

    def get(self, node_id: str) -> NodeInfo | None:
        return self._infos.get(node_id)

    def set_node(self, node: objects_pb2.Node) -> bool:
        """Add or update a node; True when anything placement looks at changed."""
        info = self._infos.get(node.id)
        if info is None:
            info = self._infos[node.id] = NodeInfo(node.id)
        if info.node is None:
            self._candidates = None
        return info.set_node(node)

    def remove_node(self, node_id: str) -> None:
        info = self._infos.get(node_id)
        if info is None:
            return
        info.clear_node()
        self._candidates = None
        if not info.tasks:
            del self._infos[node_id]

    def add_task(self, task_id: str, node_id: str, usage: TaskUsage) -> NodeInfo:
        info = self._infos.get(node_id)
        if info is None:
            info = self._infos[node_id] = NodeInfo(node_id)
        info.add_task(task_id, usage)
        return info

    def remove_task(self, task_id: str, node_id: str) -> TaskUsage | None:
        info = self._infos.get(node_id)
        if info is None:
            return None
        usage = info.remove_task(task_id)
        if info.node is None and not info.tasks:
            del self._infos[node_id]
        return usage

    def candidates(self) -> list[NodeInfo]:
        """Nodes whose object is known, sorted by id: the order that breaks every tie."""
        if self._candidates is None:
            self._candidates = sorted(
                (info for info in self._infos.values() if info.node is not None),
                key=lambda info: info.node_id,
            )
        return self._candidates
