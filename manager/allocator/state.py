"""What the allocator holds (pools rebuilt from the store) and what it still has to do.

`observe` takes store events; `allocate` runs inside a write transaction and allocates one
chunk of pending networks, services and tasks, recording in a Journal what to undo should
the transaction not commit; `settle` then records the outcome.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from manager.allocator import metrics
from manager.allocator.endpoints import EndpointAllocator, publishes_ingress, service_name
from manager.allocator.errors import AllocationError
from manager.allocator.journal import Journal
from manager.allocator.networks import (
    OVERLAY,
    NetworkAllocator,
    describe,
    is_allocated,
    is_overlay,
)
from manager.allocator.subnets import PoolConfig
from manager.clock import now_timestamp
from manager.store import Event, EventAction, NameConflict, WriteTx, new_id
from shoal.v1 import objects_pb2, specs_pb2, types_pb2

log = logging.getLogger(__name__)

INGRESS_NETWORK_NAME = "ingress"
PENDING_MESSAGE = "pending task scheduling"
WAITING_MESSAGE = "waiting for allocation"


class Work(enum.Enum):
    """Kinds of pending work, in the order a transaction does them."""

    NETWORK = "network"
    SERVICE = "service"
    TASK = "task"
    NODE = "node"  # a node's own address on the ingress network (the routing mesh)


WorkItem = tuple[Work, str]


def needs_allocation(task: objects_pb2.Task) -> bool:
    return task.status.state == types_pb2.NEW and task.desired_state <= types_pb2.RUNNING


def is_live(task: objects_pb2.Task) -> bool:
    """Allocated and not yet stopped: its addresses are in use (states only move forward,
    so a task past RUNNING never uses them again)."""
    return types_pb2.PENDING <= task.status.state <= types_pb2.RUNNING


def _pool_config(cluster: objects_pb2.Cluster | None) -> PoolConfig | AllocationError:
    """The cluster's pools, or why they are unusable (networks that bring their own subnet
    can still be allocated)."""
    try:
        return PoolConfig.of_cluster(cluster)
    except AllocationError as exc:
        log.error("allocator: %s; networks without a subnet cannot be allocated", exc)
        return exc


def task_owner(task_id: str) -> str:
    return f"task {task_id}"


def node_owner(node_id: str) -> str:
    return f"node {node_id}"


def ingress_address(node: objects_pb2.Node) -> tuple[str, str] | None:
    """(network id, address) of the node's attachment to the ingress network, if any."""
    for attachment in node.attachments:
        if attachment.network.spec.ingress and attachment.addresses:
            return attachment.network.id, attachment.addresses[0]
    return None


@dataclass
class Outcome:
    """What one transaction attempt did: errors by item, and whether capacity appeared."""

    errors: dict[WorkItem, str] = field(default_factory=dict)
    allocated: dict[Work, int] = field(default_factory=dict)
    capacity_appeared: bool = False

    def count(self, kind: Work) -> None:
        self.allocated[kind] = self.allocated.get(kind, 0) + 1


class AllocatorState:
    def __init__(
        self,
        networks: Iterable[objects_pb2.Network],
        services: Iterable[objects_pb2.Service],
        tasks: Iterable[objects_pb2.Task],
        cluster: objects_pb2.Cluster | None,
        nodes: Iterable[objects_pb2.Node] = (),
    ) -> None:
        self._networks = NetworkAllocator()
        self._endpoints = EndpointAllocator(self._networks)
        self._pool_config = _pool_config(cluster)
        self._ingress_id: str | None = None
        self._task_addresses: dict[str, list[tuple[str, str]]] = {}
        self._node_addresses: dict[str, tuple[str, str]] = {}
        self._nodes_waiting: set[str] = set()  # for an ingress network to exist
        self._pending: dict[Work, dict[str, None]] = {kind: {} for kind in Work}
        self._failed: dict[WorkItem, str] = {}
        self._retry_failed = False
        for network in networks:
            self._network_changed(network)
        for service in services:
            self._restore_service(service)
        for task in tasks:
            self._task_changed(task)
        for node in nodes:
            self._node_changed(node)

    # --- observing the store -----------------------------------------------------------

    def observe(self, event: Event) -> None:
        obj = event.object
        deleted = event.action is EventAction.DELETE
        if isinstance(obj, objects_pb2.Network):
            if deleted:
                self._network_removed(obj)
            else:
                self._network_changed(obj)
        elif isinstance(obj, objects_pb2.Service):
            if deleted:
                self._forget((Work.SERVICE, obj.id))
                self._endpoints.release(obj.id)
                self._retry_failed = True
            else:
                self._pending[Work.SERVICE][obj.id] = None
        elif isinstance(obj, objects_pb2.Task):
            if deleted:
                self._forget((Work.TASK, obj.id))
                self._release_task(obj.id)
            else:
                self._task_changed(obj)
        elif isinstance(obj, objects_pb2.Cluster):
            self._pool_config = _pool_config(None if deleted else obj)
            self._retry_failed = True
        elif isinstance(obj, objects_pb2.Node):
            if deleted:
                self._forget((Work.NODE, obj.id))
                self._nodes_waiting.discard(obj.id)
                self._release_node(obj.id)
            else:
                self._node_changed(obj)

    def _node_changed(self, node: objects_pb2.Node) -> None:
        held = ingress_address(node)
        if held is None:
            self._pending[Work.NODE][node.id] = None
        elif node.id not in self._node_addresses:
            network_id, addr = held
            try:
                self._networks.hold(network_id, addr, node_owner(node.id))
            except AllocationError as exc:
                log.error("allocator: %s: %s", node_owner(node.id), exc)
                return
            self._node_addresses[node.id] = held

    def _forget_node_address(self, node_id: str) -> None:
        self._node_addresses.pop(node_id, None)

    def _release_node(self, node_id: str) -> None:
        held = self._node_addresses.pop(node_id, None)
        if held is not None:
            self._networks.detach(held[0], held[1], node_owner(node_id))
            self._retry_failed = True

    def _network_changed(self, network: objects_pb2.Network) -> None:
        if network.spec.ingress:
            self._ingress_id = network.id
            for node_id in self._nodes_waiting:  # every node gets an address on it
                self._pending[Work.NODE][node_id] = None
            self._nodes_waiting.clear()
        if not is_allocated(network):
            self._pending[Work.NETWORK][network.id] = None
            return
        try:
            self._networks.restore(network)
        except AllocationError as exc:
            log.error("allocator: %s cannot be restored: %s", describe(network), exc)
            self._failed[(Work.NETWORK, network.id)] = str(exc)
        else:
            self._retry_failed = True

    def _network_removed(self, network: objects_pb2.Network) -> None:
        self._forget((Work.NETWORK, network.id))
        if self._ingress_id == network.id:
            self._ingress_id = None
        self._networks.release(network.id)
        self._retry_failed = True

    def _restore_service(self, service: objects_pb2.Service) -> None:
        try:
            self._endpoints.restore(service)
        except AllocationError as exc:
            log.error("allocator: %s: endpoint cannot be restored: %s", service_name(service), exc)
        self._pending[Work.SERVICE][service.id] = None

    def _task_changed(self, task: objects_pb2.Task) -> None:
        item = (Work.TASK, task.id)
        if needs_allocation(task):
            if self._failed.get(item) != task.status.err:  # not just our own error written back
                self._pending[Work.TASK][task.id] = None
            return
        self._forget(item)
        if is_live(task):
            if task.id not in self._task_addresses:
                self._restore_task(task)
        else:
            self._release_task(task.id)

    def _restore_task(self, task: objects_pb2.Task) -> None:
        owner = task_owner(task.id)
        held = []
        for attachment in task.networks:
            network_id = attachment.network.id
            if self._networks.pool(network_id) is None:
                continue  # not an overlay network, or one that is gone
            for addr in attachment.addresses:
                try:
                    self._networks.hold(network_id, addr, owner)
                except AllocationError as exc:
                    log.error("allocator: %s: %s", owner, exc)
                    continue
                held.append((network_id, addr))
        self._task_addresses[task.id] = held

    def _release_task(self, task_id: str) -> None:
        held = self._task_addresses.pop(task_id, [])
        for network_id, addr in held:
            self._networks.detach(network_id, addr, task_owner(task_id))
        if held:
            self._retry_failed = True

    def _forget_addresses(self, task_id: str) -> None:
        self._task_addresses.pop(task_id, None)

    def _forget(self, item: WorkItem) -> None:
        kind, object_id = item
        self._pending[kind].pop(object_id, None)
        self._failed.pop(item, None)

    # --- work --------------------------------------------------------------------------

    def take_work(self, limit: int) -> list[WorkItem]:
        """Up to `limit` items to allocate next: networks, then services, then tasks.
        Items that failed are tried again once capacity may have appeared."""
        if self._retry_failed:
            self._retry_failed = False
            for kind, object_id in self._failed:
                self._pending[kind][object_id] = None
        work: list[WorkItem] = []
        for kind in Work:
            pending = self._pending[kind]
            while pending and len(work) < limit:
                object_id = next(iter(pending))
                del pending[object_id]
                work.append((kind, object_id))
        return work

    def requeue(self, work: Iterable[WorkItem]) -> None:
        """Items of a transaction that did not commit: to be tried again."""
        for kind, object_id in work:
            self._pending[kind][object_id] = None

    def settle(self, work: Iterable[WorkItem], outcome: Outcome) -> None:
        """Record the outcome of a committed transaction."""
        for item in work:
            error = outcome.errors.get(item)
            if error is None:
                self._failed.pop(item, None)
                continue
            if self._failed.get(item) != error:
                log.warning("allocator: %s %s waits: %s", item[0].value, item[1], error)
            self._failed[item] = error
        for kind, count in outcome.allocated.items():
            metrics.ALLOCATIONS.labels(kind=kind.value, result="allocated").inc(count)
        for kind, _ in outcome.errors:
            metrics.ALLOCATIONS.labels(kind=kind.value, result="failed").inc()
        if outcome.capacity_appeared:
            self._retry_failed = True
        metrics.WAITING_TASKS.set(sum(1 for kind, _ in self._failed if kind is Work.TASK))

    def allocate(
        self, tx: WriteTx, work: Iterable[WorkItem], journal: Journal, outcome: Outcome
    ) -> None:
        """Allocate `work` in `tx`; pool changes go to `journal`, errors to `outcome`."""
        attempt = _Attempt(tx, journal, outcome)
        for item in work:
            kind, object_id = item
            try:
                if kind is Work.NETWORK:
                    self._allocate_network(attempt, object_id)
                elif kind is Work.SERVICE:
                    self._allocate_service(attempt, object_id)
                elif kind is Work.TASK:
                    self._allocate_task(attempt, object_id)
                else:
                    self._allocate_node(attempt, object_id)
            except AllocationError as exc:
                outcome.errors[item] = str(exc)

    def _error(self, attempt: _Attempt, item: WorkItem) -> str | None:
        return attempt.outcome.errors.get(item) or self._failed.get(item)

    def _allocate_network(self, attempt: _Attempt, network_id: str) -> None:
        network = attempt.tx.get(objects_pb2.Network, network_id)
        if network is None:
            return
        if is_allocated(network):
            if is_overlay(network) and self._networks.pool(network_id) is None:
                # Its stored allocation clashed with another when it was read: try again.
                self._networks.restore(network)
                attempt.outcome.capacity_appeared = True
            return
        attempt.tx.update(self._networks.allocate(network, self._pool_config, attempt.journal))
        attempt.outcome.count(Work.NETWORK)
        attempt.outcome.capacity_appeared = True

    def _vip_networks(self, tx: WriteTx, service: objects_pb2.Service) -> list[str]:
        """The networks the service needs a VIP on: the ingress network first ("" while
        there is none) when it publishes ports there, then its tasks' overlay networks;
        none in DNSRR mode."""
        spec = service.spec
        if spec.endpoint.mode == types_pb2.EndpointSpec.DNSRR:
            return []
        networks = [self._ingress_id or ""] if publishes_ingress(spec.endpoint) else []
        for config in spec.task.networks:
            network = tx.get(objects_pb2.Network, config.target)
            if network is None:
                raise AllocationError(f"network {config.target} does not exist")
            if is_overlay(network) and network.id not in networks:
                networks.append(network.id)
        return networks

    def _allocate_service(self, attempt: _Attempt, service_id: str) -> None:
        tx = attempt.tx
        service = tx.get(objects_pb2.Service, service_id)
        if service is None:
            return
        part = Journal()
        created: objects_pb2.Network | None = None
        try:
            networks = self._vip_networks(tx, service)
            if self._endpoints.is_current(service, networks):
                return
            if "" in networks:
                created = self._create_ingress(tx, part)
                networks = [created.id if n == "" else n for n in networks]
            for network_id in networks:
                self._check_network(attempt, network_id)
            endpoint = self._endpoints.allocate(service, networks, part)
        except AllocationError as exc:
            part.rollback()
            if created is not None:
                tx.delete(objects_pb2.Network, created.id)
            raise AllocationError(f"{service_name(service)}: {exc}") from None
        attempt.journal.absorb(part)
        service.endpoint.CopyFrom(endpoint)
        tx.update(service)
        attempt.outcome.count(Work.SERVICE)
        attempt.outcome.capacity_appeared = True

    def _create_ingress(self, tx: WriteTx, journal: Journal) -> objects_pb2.Network:
        """The routing-mesh network, made on first need (Docker makes it at cluster init)."""
        network = objects_pb2.Network(id=new_id())
        network.spec.annotations.name = INGRESS_NETWORK_NAME
        network.spec.annotations.labels["com.docker.swarm.internal"] = "true"
        network.spec.driver_config.name = OVERLAY
        network.spec.ingress = True
        part = Journal()
        allocated = self._networks.allocate(network, self._pool_config, part)
        try:
            tx.create(allocated)
        except NameConflict:
            part.rollback()
            raise AllocationError(
                f"the ingress network cannot be created: a network named "
                f"{INGRESS_NETWORK_NAME!r} exists and is not the ingress network"
            ) from None
        self._ingress_id = allocated.id
        part.on_rollback(self._lose_ingress)
        journal.absorb(part)
        return allocated

    def _lose_ingress(self) -> None:
        self._ingress_id = None

    def _allocate_node(self, attempt: _Attempt, node_id: str) -> None:
        """The node's address on the ingress network, where its end of the routing mesh
        lives; a node waits while there is no ingress network."""
        node = attempt.tx.get(objects_pb2.Node, node_id)
        if node is None or ingress_address(node) is not None:
            return
        ingress = self._ingress_id
        network = attempt.tx.get(objects_pb2.Network, ingress) if ingress else None
        if network is None or self._networks.pool(network.id) is None:
            self._nodes_waiting.add(node_id)
            return
        part = Journal()
        addr = self._networks.attach(network.id, node_owner(node_id), "", part)
        self._node_addresses[node_id] = (network.id, addr)
        part.on_rollback(functools.partial(self._forget_node_address, node_id))
        attempt.journal.absorb(part)
        kept = [a for a in node.attachments if not a.network.spec.ingress]
        del node.attachments[:]
        node.attachments.extend(kept)
        node.attachments.add(network=network, addresses=[addr])
        attempt.tx.update(node)
        attempt.outcome.count(Work.NODE)

    def _check_network(self, attempt: _Attempt, network_id: str) -> objects_pb2.Network:
        """The network, if it exists and this allocator holds its allocation."""
        network = attempt.tx.get(objects_pb2.Network, network_id)
        if network is None:
            raise AllocationError(f"network {network_id} does not exist")
        if is_overlay(network) and self._networks.pool(network_id) is None:
            why = self._error(attempt, (Work.NETWORK, network_id))
            raise AllocationError(
                f"{describe(network)} is not allocated" + (f" ({why})" if why else " yet")
            )
        return network

    def _allocate_task(self, attempt: _Attempt, task_id: str) -> None:
        tx = attempt.tx
        task = tx.get(objects_pb2.Task, task_id)
        if task is None or not needs_allocation(task):
            return
        part = Journal()
        try:
            attachments, endpoint = self._attach(attempt, task, part)
        except AllocationError as exc:
            part.rollback()
            message = str(exc)
            attempt.outcome.errors[(Work.TASK, task_id)] = message
            if task.status.err != message:
                task.status.message = WAITING_MESSAGE
                task.status.err = message
                task.status.timestamp.CopyFrom(attempt.now)
                tx.update(task)
            return
        attempt.journal.absorb(part)
        del task.networks[:]
        task.networks.extend(attachments)
        if endpoint is not None:
            task.endpoint.CopyFrom(endpoint)
        task.status.state = types_pb2.PENDING
        task.status.message = PENDING_MESSAGE
        task.status.err = ""
        task.status.timestamp.CopyFrom(attempt.now)
        tx.update(task)
        attempt.outcome.count(Work.TASK)

    def _attach(
        self, attempt: _Attempt, task: objects_pb2.Task, journal: Journal
    ) -> tuple[list[objects_pb2.NetworkAttachment], objects_pb2.Endpoint | None]:
        """The task's network attachments (an address on each overlay network) and its
        service's endpoint."""
        tx = attempt.tx
        configs = list(task.spec.networks)
        endpoint = None
        service = tx.get(objects_pb2.Service, task.service_id) if task.service_id else None
        if service is not None:
            try:
                current = self._endpoints.is_current(service, self._vip_networks(tx, service))
            except AllocationError as exc:
                raise AllocationError(f"{service_name(service)}: {exc}") from None
            if not current:
                why = self._error(attempt, (Work.SERVICE, service.id))
                raise AllocationError(why or f"{service_name(service)} is not allocated yet")
            if service.HasField("endpoint"):
                endpoint = service.endpoint
            ingress = self._ingress_id
            if (
                publishes_ingress(service.spec.endpoint)
                and ingress is not None
                and all(c.target != ingress for c in configs)
            ):
                configs.insert(0, specs_pb2.NetworkAttachmentConfig(target=ingress))
        owner = task_owner(task.id)
        attachments: list[objects_pb2.NetworkAttachment] = []
        held: list[tuple[str, str]] = []
        for config in configs:
            if any(a.network.id == config.target for a in attachments):
                raise AllocationError(f"the task attaches to network {config.target} twice")
            network = self._check_network(attempt, config.target)
            attachment = objects_pb2.NetworkAttachment(
                network=network,
                aliases=config.aliases,
                driver_attachment_opts=config.driver_attachment_opts,
            )
            if is_overlay(network):
                if len(config.addresses) > 1:
                    raise AllocationError(
                        f"{len(config.addresses)} addresses requested on {describe(network)}; "
                        "a task gets one per overlay network"
                    )
                requested = config.addresses[0] if config.addresses else ""
                addr = self._networks.attach(network.id, owner, requested, journal)
                attachment.addresses.append(addr)
                held.append((network.id, addr))
            attachments.append(attachment)
        self._task_addresses[task.id] = held
        journal.on_rollback(functools.partial(self._forget_addresses, task.id))
        return attachments, endpoint


@dataclass
class _Attempt:
    """One run of a transaction function."""

    tx: WriteTx
    journal: Journal
    outcome: Outcome
    now: Timestamp = field(default_factory=now_timestamp)
