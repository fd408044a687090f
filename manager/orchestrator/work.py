"""What a reconciler is asked to look at again: a service, a slot, a node (its queue keeps
each once)."""

from __future__ import annotations

from dataclasses import dataclass

from manager.orchestrator.slots import SlotKey


@dataclass(frozen=True)
class ServiceWork:
    service_id: str


@dataclass(frozen=True)
class SlotWork:
    key: SlotKey


@dataclass(frozen=True)
class NodeWork:
    node_id: str
