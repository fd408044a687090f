"""What a group of tasks asks of a node, read once per group from one of its tasks.

Tasks are grouped by (service, spec version, host ports): tasks of one group have the same
spec, so the filters run once per node for the whole group. A task without a spec version
is grouped by the bytes of its spec instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from manager.scheduler.constraints import Constraint, parse_constraints
from manager.scheduler.errors import SchedulerError
from manager.scheduler.node_info import HostPort, TaskUsage, host_ports
from manager.scheduler.preferences import Spread, parse_preferences
from shoal.v1 import objects_pb2

GroupKey = tuple[str, int, bytes, tuple[HostPort, ...]]

# Spellings of one architecture (Go's names are the canonical ones).
ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}


def normalize_arch(arch: str) -> str:
    arch = arch.lower()
    return ARCH_ALIASES.get(arch, arch)


def group_key(task: objects_pb2.Task) -> GroupKey:
    has_version = task.HasField("spec_version")
    spec = b"" if has_version else task.spec.SerializeToString(deterministic=True)
    return (task.service_id, task.spec_version.index, spec, tuple(sorted(host_ports(task))))


@dataclass(frozen=True, slots=True)
class TaskRequirements:
    # What each task of the group takes from the node it is placed on.
    usage: TaskUsage
    constraints: tuple[Constraint, ...]
    # (os, arch) pairs, lower-cased and normalised; "" matches anything.
    platforms: tuple[tuple[str, str], ...]
    # Most active tasks of the service on one node; 0 = unlimited.
    max_replicas: int
    spreads: tuple[Spread, ...]
    # Why the placement cannot be used (a constraint or preference that does not parse).
    invalid: str = ""

    @classmethod
    def of(cls, task: objects_pb2.Task) -> TaskRequirements:
        placement = task.spec.placement
        platforms = tuple(
            (platform.os.lower(), normalize_arch(platform.architecture))
            for platform in placement.platforms
        )
        usage = TaskUsage.of(task)
        try:
            constraints = parse_constraints(placement.constraints)
            spreads = parse_preferences(placement.preferences)
        except SchedulerError as error:
            return cls(usage, (), platforms, placement.max_replicas, (), invalid=str(error))
        return cls(usage, constraints, platforms, placement.max_replicas, spreads)
