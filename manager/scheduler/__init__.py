"""The scheduler: picks a node for every PENDING task (leader only).

A pure decision core (`schedule`, `place_tasks`) over protobuf nodes and tasks: filters in
SwarmKit's order (ready, resources, constraints, platform, host ports, max replicas), then the
spread strategy with placement preferences. `Scheduler` keeps the core's node infos current
from store events and decides in batches (see `driver`). `parse_constraints` and
`parse_preferences` validate specs for the Control API.
"""

from manager.scheduler.constraints import (
    Constraint,
    NodeAttributes,
    node_matches,
    parse_constraint,
    parse_constraints,
)
from manager.scheduler.driver import Scheduler
from manager.scheduler.errors import ConstraintError, PreferenceError, SchedulerError
from manager.scheduler.node_info import NodeInfo, TaskUsage
from manager.scheduler.node_set import NodeSet
from manager.scheduler.preferences import Spread, parse_preferences, parse_spread
from manager.scheduler.scheduler import (
    NO_SUITABLE_NODE,
    Assignment,
    Decisions,
    Unschedulable,
    place_tasks,
    schedule,
)

__all__ = [
    "NO_SUITABLE_NODE",
    "Assignment",
    "Constraint",
    "ConstraintError",
    "Decisions",
    "NodeAttributes",
    "NodeInfo",
    "NodeSet",
    "PreferenceError",
    "Scheduler",
    "SchedulerError",
    "Spread",
    "TaskUsage",
    "Unschedulable",
    "node_matches",
    "parse_constraint",
    "parse_constraints",
    "parse_preferences",
    "parse_spread",
    "place_tasks",
    "schedule",
]
