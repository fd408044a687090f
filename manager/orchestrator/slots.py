"""Slots: the unit the orchestrators keep filled.

A replicated service has numbered slots (task.slot >= 1); a global service has one slot per
node (task.slot == 0, keyed by node id). Every task of a slot is a generation of the same
replica: the runnable ones are current, the others its history.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from manager.orchestrator.tasks import is_runnable
from manager.store import ReadTx
from shoal.v1 import objects_pb2


class SlotKey(NamedTuple):
    service_id: str
    # 1-based slot number of a replicated task; 0 for a global task.
    slot: int
    # Node of a global task; "" for a replicated one.
    node_id: str


def slot_key(task: objects_pb2.Task) -> SlotKey:
    return SlotKey(task.service_id, task.slot, "" if task.slot else task.node_id)


def group_by_slot(tasks: Iterable[objects_pb2.Task]) -> dict[SlotKey, list[objects_pb2.Task]]:
    groups: dict[SlotKey, list[objects_pb2.Task]] = {}
    for task in tasks:
        groups.setdefault(slot_key(task), []).append(task)
    return groups


def slot_tasks(tx: ReadTx, key: SlotKey) -> list[objects_pb2.Task]:
    """Every task of one slot, as `tx` sees it (its own pending changes included)."""
    if key.slot:
        return tx.find(objects_pb2.Task, "slot", (key.service_id, key.slot))
    return [
        t
        for t in tx.find(objects_pb2.Task, "node", key.node_id)
        if t.service_id == key.service_id and t.slot == 0
    ]


def runnable(tasks: Iterable[objects_pb2.Task]) -> list[objects_pb2.Task]:
    return [t for t in tasks if is_runnable(t)]


def cluster_of(tx: ReadTx) -> objects_pb2.Cluster | None:
    """The cluster object (there is at most one), or None before it exists."""
    clusters = tx.list(objects_pb2.Cluster)
    return clusters[0] if clusters else None
