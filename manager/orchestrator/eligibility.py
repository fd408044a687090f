"""Which services are whose, and which nodes may run (or must give up) their tasks."""

from __future__ import annotations

import functools
import logging

from manager.scheduler import Constraint, ConstraintError, node_matches, parse_constraints
from shoal.v1 import objects_pb2, specs_pb2, types_pb2

log = logging.getLogger(__name__)


def is_replicated(service: objects_pb2.Service) -> bool:
    return service.spec.WhichOneof("mode") == "replicated_service"


def is_global(service: objects_pb2.Service) -> bool:
    return service.spec.WhichOneof("mode") == "global_service"


def is_live(service: objects_pb2.Service | None) -> bool:
    """The service exists and is not being removed."""
    return service is not None and not service.pending_delete


def takes_new_tasks(node: objects_pb2.Node) -> bool:
    """READY and ACTIVE: the scheduler may put new tasks there."""
    return (
        node.status.state == types_pb2.NodeStatus.READY
        and node.spec.availability == specs_pb2.NodeSpec.ACTIVE
    )


def is_lost(node: objects_pb2.Node | None) -> bool:
    """Tasks on this node must move: it is gone, DOWN or drained. (UNKNOWN and DISCONNECTED
    are passing states, e.g. just after a leader change; PAUSE keeps its tasks.)"""
    return (
        node is None
        or node.status.state == types_pb2.NodeStatus.DOWN
        or node.spec.availability == specs_pb2.NodeSpec.DRAIN
    )


@functools.lru_cache(maxsize=1024)
def _constraints(expressions: tuple[str, ...]) -> tuple[Constraint, ...] | None:
    try:
        return parse_constraints(expressions)
    except ConstraintError as error:
        # The Control API refuses such specs; one that got in anyway matches no node.
        log.warning("placement constraint ignored, it matches no node: %s", error)
        return None


def meets_constraints(node: objects_pb2.Node, spec: specs_pb2.TaskSpec) -> bool:
    constraints = _constraints(tuple(spec.placement.constraints))
    return constraints is not None and node_matches(constraints, node)


def may_run_global_task(node: objects_pb2.Node, service: objects_pb2.Service) -> bool:
    """A global service has a task on every node that takes new tasks and meets its
    constraints."""
    return takes_new_tasks(node) and meets_constraints(node, service.spec.task)
