"""What one node must hold: its tasks, and the secrets and configs they use.

The set starts from a read view (the COMPLETE set an agent gets on every new stream) and
then follows store events, collecting the changes of the next INCREMENTAL message:

- A task joins when it is on the node, ASSIGNED or further, and either still wanted
  (desired state RUNNING or below) or not yet stopped, so the agent stops it.
- A task in the set stays until it is deleted or leaves the node (REMOVE); a change of
  anything but its status (which the agent itself reports) is sent again (UPDATE): that is
  how a desired state of SHUTDOWN or REMOVE reaches the agent.
- Secrets and configs are sent while a task of the set that has not stopped uses them.
- The endpoints of every overlay network a task of the set is on (see `network_endpoints`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias, TypeVar

from manager.dispatcher.network_endpoints import NetworkEndpointSet
from manager.store import Event, EventAction, ReadTx
from shoal.v1 import dispatcher_pb2, objects_pb2, types_pb2

UPDATE = dispatcher_pb2.AssignmentChange.UPDATE
REMOVE = dispatcher_pb2.AssignmentChange.REMOVE
NODE_INDEX = "node"

Action: TypeAlias = dispatcher_pb2.AssignmentChange.Action.ValueType
Dependency = TypeVar("Dependency", objects_pb2.Secret, objects_pb2.Config)


def _change(
    action: Action, obj: objects_pb2.Task | objects_pb2.Secret | objects_pb2.Config
) -> dispatcher_pb2.AssignmentChange:
    if isinstance(obj, objects_pb2.Task):
        assignment = dispatcher_pb2.Assignment(task=obj)
    elif isinstance(obj, objects_pb2.Secret):
        assignment = dispatcher_pb2.Assignment(secret=obj)
    else:
        assignment = dispatcher_pb2.Assignment(config=obj)
    return dispatcher_pb2.AssignmentChange(assignment=assignment, action=action)


def joins(task: objects_pb2.Task, node_id: str) -> bool:
    """Whether a task not yet in the node's set belongs in it."""
    return (
        task.node_id == node_id
        and task.status.state >= types_pb2.ASSIGNED
        and (task.desired_state <= types_pb2.RUNNING or task.status.state <= types_pb2.RUNNING)
    )


def _agent_view(task: objects_pb2.Task) -> bytes:
    """The task without what only changes on the agent's own reports or on every write."""
    copy = objects_pb2.Task()
    copy.CopyFrom(task)
    copy.ClearField("meta")
    copy.ClearField("status")
    return copy.SerializeToString(deterministic=True)


def _uses(task: objects_pb2.Task) -> tuple[list[str], list[str]]:
    """The secret and config ids a task of the set needs now (none once it stopped)."""
    if task.status.state > types_pb2.RUNNING:
        return [], []
    container = task.spec.container
    return [s.secret_id for s in container.secrets], [c.config_id for c in container.configs]


class AssignmentSet:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._tasks: dict[str, objects_pb2.Task] = {}
        self._secrets: dict[str, objects_pb2.Secret] = {}
        self._configs: dict[str, objects_pb2.Config] = {}
        # (kind, id) -> the change the next message carries for it
        self._changes: dict[tuple[str, str], dispatcher_pb2.AssignmentChange] = {}
        self._dependencies_dirty = False
        self._networks = NetworkEndpointSet(node_id)

    @classmethod
    def load(cls, node_id: str, tx: ReadTx) -> AssignmentSet:
        assignments = cls(node_id)
        for task in tx.find(objects_pb2.Task, NODE_INDEX, node_id):
            if joins(task, node_id):
                assignments._tasks[task.id] = task
        assignments._resolve_dependencies(tx)
        assignments._changes.clear()
        assignments._networks.load(tx)
        return assignments

    @property
    def pending(self) -> int:
        """Changes collected for the next message."""
        return len(self._changes)

    def complete(self) -> list[dispatcher_pb2.AssignmentChange]:
        """The whole set, as the changes of a COMPLETE message."""
        changes = [_change(UPDATE, t) for t in self._tasks.values()]
        changes += [_change(UPDATE, s) for s in self._secrets.values()]
        changes += [_change(UPDATE, c) for c in self._configs.values()]
        return changes + self._networks.complete()

    def observe(self, event: Event) -> None:
        obj = event.object
        if isinstance(obj, objects_pb2.Task):
            current = event.new if event.action is not EventAction.DELETE else None
            self._networks.task(obj.id, current if isinstance(current, objects_pb2.Task) else None)
            if obj.node_id == self.node_id or obj.id in self._tasks:
                self._task_event(event, obj)
        elif isinstance(obj, objects_pb2.Node):
            self._networks.node(obj, deleted=event.action is EventAction.DELETE)
        elif isinstance(obj, objects_pb2.Secret):
            self._dependency_event(event, obj, self._secrets, "secret")
        elif isinstance(obj, objects_pb2.Config):
            self._dependency_event(event, obj, self._configs, "config")

    def take_changes(self, tx: ReadTx) -> list[dispatcher_pb2.AssignmentChange]:
        """The changes since the last call, with the secrets and configs they need now."""
        if self._dependencies_dirty:
            self._resolve_dependencies(tx)
        changes = list(self._changes.values())
        self._changes.clear()
        return changes + self._networks.changes()

    def _task_event(self, event: Event, task: objects_pb2.Task) -> None:
        held = self._tasks.get(task.id)
        current = event.new if event.action is not EventAction.DELETE else None
        assert current is None or isinstance(current, objects_pb2.Task)
        if current is None or current.node_id != self.node_id:
            if held is not None:
                del self._tasks[task.id]
                self._changes[("task", task.id)] = _change(REMOVE, held)
                self._dependencies_dirty = True
            return
        if held is None:
            if joins(current, self.node_id):
                self._tasks[task.id] = current
                self._changes[("task", task.id)] = _change(UPDATE, current)
                self._dependencies_dirty = True
            return
        self._tasks[task.id] = current
        if _uses(held) != _uses(current):
            self._dependencies_dirty = True
        if _agent_view(held) != _agent_view(current):
            self._changes[("task", task.id)] = _change(UPDATE, current)

    def _dependency_event(
        self, event: Event, obj: Dependency, sent: dict[str, Dependency], kind: str
    ) -> None:
        if obj.id not in sent:
            return
        if event.action is EventAction.DELETE:
            del sent[obj.id]
            self._changes[(kind, obj.id)] = _change(REMOVE, obj)
        else:
            sent[obj.id] = obj
            self._changes[(kind, obj.id)] = _change(UPDATE, obj)

    def _resolve_dependencies(self, tx: ReadTx) -> None:
        """Send what the set's tasks need and is not sent yet; take back what none needs."""
        self._dependencies_dirty = False
        secret_ids: dict[str, None] = {}
        config_ids: dict[str, None] = {}
        for task in self._tasks.values():
            secrets, configs = _uses(task)
            secret_ids.update(dict.fromkeys(secrets))
            config_ids.update(dict.fromkeys(configs))
        self._reconcile(tx, secret_ids, self._secrets, objects_pb2.Secret, "secret")
        self._reconcile(tx, config_ids, self._configs, objects_pb2.Config, "config")

    def _reconcile(
        self,
        tx: ReadTx,
        wanted: Iterable[str],
        sent: dict[str, Dependency],
        cls: type[Dependency],
        kind: str,
    ) -> None:
        wanted = set(wanted)
        for object_id in wanted - sent.keys():
            found = tx.get(cls, object_id)
            if found is None:
                continue  # gone: the agent rejects the task that needs it
            sent[object_id] = found
            self._changes[(kind, object_id)] = _change(UPDATE, found)
        for object_id in sent.keys() - wanted:
            self._changes[(kind, object_id)] = _change(REMOVE, sent.pop(object_id))
