"""The filters a node must pass to take a task, in SwarmKit's order, and why nodes failed.

Ready -> Resources -> Constraints -> Platform -> HostPorts -> MaxReplicas. A node is counted
against the first filter it fails, so an unschedulable task's message reads like SwarmKit's:
"no suitable node (insufficient resources on 3 nodes; 1 node not available for new tasks)".
"""

from __future__ import annotations

import abc
from typing import ClassVar

from manager.scheduler.node_info import NodeInfo
from manager.scheduler.requirements import TaskRequirements, normalize_arch


def count_nodes(n: int) -> str:
    return "1 node" if n == 1 else f"{n} nodes"


class Filter(abc.ABC):
    """One check of a node against a group's requirements."""

    # Placing tasks can change the answer (resources, ports, replica counts), so the node a
    # task was just placed on is checked again against the dynamic filters.
    dynamic: ClassVar[bool] = False

    def applies(self, req: TaskRequirements) -> bool:
        """Whether the filter has anything to check for these requirements."""
        return True

    @abc.abstractmethod
    def check(self, req: TaskRequirements, node: NodeInfo) -> bool: ...

    @abc.abstractmethod
    def explain(self, nodes: int) -> str:
        """Why `nodes` nodes failed this filter."""


class ReadyFilter(Filter):
    """The node is READY and its availability ACTIVE (not paused or drained)."""

    def check(self, req: TaskRequirements, node: NodeInfo) -> bool:
        return node.ready

    def explain(self, nodes: int) -> str:
        return f"{count_nodes(nodes)} not available for new tasks"


class ResourcesFilter(Filter):
    """The task's reservations fit in what the node has left."""

    dynamic = True

    def applies(self, req: TaskRequirements) -> bool:
        return req.usage.reserves

    def check(self, req: TaskRequirements, node: NodeInfo) -> bool:
        return node.fits(req.usage)

    def explain(self, nodes: int) -> str:
        return f"insufficient resources on {count_nodes(nodes)}"


class ConstraintsFilter(Filter):
    """Every placement constraint holds on the node."""

    def applies(self, req: TaskRequirements) -> bool:
        return bool(req.constraints)

    def check(self, req: TaskRequirements, node: NodeInfo) -> bool:
        attributes = node.attributes
        if attributes is None:
            return False
        return all(constraint.matches(attributes) for constraint in req.constraints)

    def explain(self, nodes: int) -> str:
        return f"scheduling constraints not satisfied on {count_nodes(nodes)}"


class PlatformFilter(Filter):
    """The node's os/arch is one of the placement's platforms ("" in a platform = any)."""

    def applies(self, req: TaskRequirements) -> bool:
        return bool(req.platforms)

    def check(self, req: TaskRequirements, node: NodeInfo) -> bool:
        attributes = node.attributes
        if attributes is None:
            return False
        node_os, node_arch = attributes.os, normalize_arch(attributes.arch)
        return any(
            (not os or os == node_os) and (not arch or arch == node_arch)
            for os, arch in req.platforms
        )

    def explain(self, nodes: int) -> str:
        return f"unsupported platform on {count_nodes(nodes)}"


class HostPortsFilter(Filter):
    """None of the task's host-mode published ports is taken on the node."""

    dynamic = True

    def applies(self, req: TaskRequirements) -> bool:
        return bool(req.usage.host_ports)

    def check(self, req: TaskRequirements, node: NodeInfo) -> bool:
        return not node.uses_any_port(req.usage.host_ports)

    def explain(self, nodes: int) -> str:
        return f"host-mode port already in use on {count_nodes(nodes)}"


class MaxReplicasFilter(Filter):
    """The node runs fewer than placement.max_replicas active tasks of the service."""

    dynamic = True

    def applies(self, req: TaskRequirements) -> bool:
        return req.max_replicas > 0

    def check(self, req: TaskRequirements, node: NodeInfo) -> bool:
        return node.active_by_service.get(req.usage.service_id, 0) < req.max_replicas

    def explain(self, nodes: int) -> str:
        return f"max replicas per node limit reached on {count_nodes(nodes)}"


PIPELINE: tuple[Filter, ...] = (
    ReadyFilter(),
    ResourcesFilter(),
    ConstraintsFilter(),
    PlatformFilter(),
    HostPortsFilter(),
    MaxReplicasFilter(),
)


class FilterRun:
    """The pipeline set up for one group of tasks; remembers which filter rejected each node."""

    def __init__(self, req: TaskRequirements) -> None:
        self._req = req
        self._filters = [(i, f) for i, f in enumerate(PIPELINE) if f.applies(req)]
        self._dynamic = [(i, f) for i, f in self._filters if f.dynamic]
        self._rejected = [0] * len(PIPELINE)

    def admits(self, node: NodeInfo) -> bool:
        """Run every filter that applies; count the node against the first that fails."""
        return self._run(self._filters, node)

    def still_admits(self, node: NodeInfo) -> bool:
        """After a task was placed on an admitted node: run the dynamic filters only."""
        return self._run(self._dynamic, node)

    def _run(self, filters: list[tuple[int, Filter]], node: NodeInfo) -> bool:
        req = self._req
        for i, f in filters:
            if not f.check(req, node):
                self._rejected[i] += 1
                return False
        return True

    def explain(self) -> str:
        """The rejections, most common first ("" when no node was rejected)."""
        counted = sorted((-n, i) for i, n in enumerate(self._rejected) if n)
        return "; ".join(PIPELINE[i].explain(-negative) for negative, i in counted)
