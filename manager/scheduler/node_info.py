"""What the scheduler knows about one node beyond its object: what its tasks use.

Available resources are the node's described resources minus the reservations of the tasks
assigned there that have not finished (states ASSIGNED..RUNNING). Tasks whose desired state is
past COMPLETE still hold resources and ports until they stop, but no longer count towards the
spread or max_replicas. Failures are kept per (service, spec version) so that a node where a
service keeps failing goes to the back of that service's list, and a fixed spec starts afresh.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from manager.scheduler.constraints import NodeAttributes
from shoal.v1 import objects_pb2, specs_pb2, types_pb2

# SwarmKit's numbers: 5 failures within 5 minutes put a node at the back of the list.
FAILURE_WINDOW_S = 300.0
MAX_FAILURES = 5
# Failures kept per (service, version): enough to order nodes that are all past MAX_FAILURES.
FAILURES_KEPT = 64

ServiceVersion = tuple[str, int]
HostPort = tuple[int, int]  # (protocol, published port)
GenericCounts = tuple[tuple[str, int], ...]


def consumes_resources(task: objects_pb2.Task) -> bool:
    """Whether the task holds resources on its node: assigned there and not finished."""
    return bool(task.node_id) and types_pb2.ASSIGNED <= task.status.state <= types_pb2.RUNNING


def awaits_scheduling(task: objects_pb2.Task) -> bool:
    """Whether the task is PENDING and still wanted (desired state not past COMPLETE)."""
    return task.status.state == types_pb2.PENDING and task.desired_state <= types_pb2.COMPLETE


def generic_counts(resources: types_pb2.Resources) -> GenericCounts:
    """Generic resources as counts per kind (a named resource counts one)."""
    counts: dict[str, int] = {}
    for resource in resources.generic:
        amount = resource.discrete_value if resource.HasField("discrete_value") else 1
        counts[resource.kind] = counts.get(resource.kind, 0) + amount
    return tuple(sorted(counts.items()))


def host_ports(task: objects_pb2.Task) -> frozenset[HostPort]:
    """Host-mode ports the task publishes (allocated ports, from its endpoint)."""
    return frozenset(
        (port.protocol, port.published_port)
        for port in task.endpoint.ports
        if port.publish_mode == types_pb2.PortConfig.HOST and port.published_port
    )


@dataclass(frozen=True, slots=True)
class TaskUsage:
    """What one task takes from its node; tasks of one group share one instance."""

    service_id: str
    spec_version: int
    nano_cpus: int
    memory_bytes: int
    generic: GenericCounts
    host_ports: frozenset[HostPort]
    # Desired state not past COMPLETE: counts for the spread and for max_replicas.
    active: bool

    @classmethod
    def of(cls, task: objects_pb2.Task) -> TaskUsage:
        reservations = task.spec.resources.reservations
        return cls(
            service_id=task.service_id,
            spec_version=task.spec_version.index,
            nano_cpus=reservations.nano_cpus,
            memory_bytes=reservations.memory_bytes,
            generic=generic_counts(reservations),
            host_ports=host_ports(task),
            active=task.desired_state <= types_pb2.COMPLETE,
        )

    @property
    def reserves(self) -> bool:
        return bool(self.nano_cpus or self.memory_bytes or self.generic)


class NodeInfo:
    """A node (once its object is known) and the tasks accounted on it.

    A NodeInfo may exist before its node object arrives (tasks seen first) or after the node
    is removed (tasks not yet gone); without a node it is never a candidate.
    """

    __slots__ = (
        "_failures",
        "_last_cleanup",
        "active_by_service",
        "active_tasks",
        "attributes",
        "available_cpus",
        "available_generic",
        "available_memory",
        "host_ports",
        "node",
        "node_id",
        "ready",
        "tasks",
        "total_cpus",
        "total_generic",
        "total_memory",
    )

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.node: objects_pb2.Node | None = None
        self.attributes: NodeAttributes | None = None
        self.ready = False
        self.total_cpus = 0
        self.total_memory = 0
        self.total_generic: dict[str, int] = {}
        self.available_cpus = 0
        self.available_memory = 0
        self.available_generic: dict[str, int] = {}
        self.tasks: dict[str, TaskUsage] = {}
        self.active_tasks = 0
        self.active_by_service: dict[str, int] = {}
        self.host_ports: dict[HostPort, int] = {}
        self._failures: dict[ServiceVersion, deque[float]] = {}
        self._last_cleanup = 0.0

    # --- the node object ---------------------------------------------------------------

    def set_node(self, node: objects_pb2.Node) -> bool:
        """Take the node's latest object; True when anything placement looks at changed."""
        attributes = NodeAttributes.of(node)
        ready = (
            node.status.state == types_pb2.NodeStatus.READY
            and node.spec.availability == specs_pb2.NodeSpec.ACTIVE
        )
        resources = node.description.resources
        generic = dict(generic_counts(resources))
        changed = (
            self.node is None
            or attributes != self.attributes
            or ready != self.ready
            or resources.nano_cpus != self.total_cpus
            or resources.memory_bytes != self.total_memory
            or generic != self.total_generic
        )
        self.node = node
        self.attributes = attributes
        self.ready = ready
        if changed:
            self.total_cpus = resources.nano_cpus
            self.total_memory = resources.memory_bytes
            self.total_generic = generic
            self._recompute_available()
        return changed

    def clear_node(self) -> None:
        """The node left the cluster; its tasks stay accounted until they go."""
        self.node = None
        self.attributes = None
        self.ready = False

    def _recompute_available(self) -> None:
        self.available_cpus = self.total_cpus
        self.available_memory = self.total_memory
        self.available_generic = dict(self.total_generic)
        for usage in self.tasks.values():
            self._take(usage)

    # --- tasks -------------------------------------------------------------------------

    def add_task(self, task_id: str, usage: TaskUsage) -> None:
        """Account `task_id` here (replacing what it was accounted with before)."""
        if task_id in self.tasks:
            self.remove_task(task_id)
        self.tasks[task_id] = usage
        self._take(usage)
        for port in usage.host_ports:
            self.host_ports[port] = self.host_ports.get(port, 0) + 1
        if usage.active:
            self.active_tasks += 1
            service = usage.service_id
            self.active_by_service[service] = self.active_by_service.get(service, 0) + 1

    def remove_task(self, task_id: str) -> TaskUsage | None:
        usage = self.tasks.pop(task_id, None)
        if usage is None:
            return None
        self.available_cpus += usage.nano_cpus
        self.available_memory += usage.memory_bytes
        for kind, amount in usage.generic:
            self.available_generic[kind] = self.available_generic.get(kind, 0) + amount
        for port in usage.host_ports:
            left = self.host_ports[port] - 1
            if left:
                self.host_ports[port] = left
            else:
                del self.host_ports[port]
        if usage.active:
            self.active_tasks -= 1
            left = self.active_by_service[usage.service_id] - 1
            if left:
                self.active_by_service[usage.service_id] = left
            else:
                del self.active_by_service[usage.service_id]
        return usage

    def _take(self, usage: TaskUsage) -> None:
        self.available_cpus -= usage.nano_cpus
        self.available_memory -= usage.memory_bytes
        for kind, amount in usage.generic:
            self.available_generic[kind] = self.available_generic.get(kind, 0) - amount

    def fits(self, usage: TaskUsage) -> bool:
        """Whether the node's remaining resources cover the task's reservations."""
        if usage.nano_cpus > self.available_cpus or usage.memory_bytes > self.available_memory:
            return False
        return all(self.available_generic.get(kind, 0) >= n for kind, n in usage.generic)

    def uses_any_port(self, ports: frozenset[HostPort]) -> bool:
        return any(port in self.host_ports for port in ports)

    # --- failures ----------------------------------------------------------------------

    def record_failure(self, service: ServiceVersion, now: float) -> None:
        """A task of `service` failed or was rejected here at `now` (seconds, any clock)."""
        if now - self._last_cleanup >= FAILURE_WINDOW_S:
            self._forget_old_failures(now)
        failures = self._failures.get(service)
        if failures is None:
            failures = self._failures[service] = deque(maxlen=FAILURES_KEPT)
        failures.append(now)

    def recent_failures(self, service: ServiceVersion, now: float) -> int:
        """Failures of `service` here within the last FAILURE_WINDOW_S before `now`."""
        failures = self._failures.get(service)
        if not failures:
            return 0
        count = 0
        for when in reversed(failures):
            if now - when > FAILURE_WINDOW_S:
                break
            count += 1
        return count

    def failure_penalty(self, service: ServiceVersion, now: float) -> int:
        """0 for a healthy node; the failure count once it reaches MAX_FAILURES (sorts last)."""
        if not self._failures:
            return 0
        count = self.recent_failures(service, now)
        return count if count >= MAX_FAILURES else 0

    def _forget_old_failures(self, now: float) -> None:
        stale = [key for key, times in self._failures.items() if now - times[-1] > FAILURE_WINDOW_S]
        for key in stale:
            del self._failures[key]
        self._last_cleanup = now
