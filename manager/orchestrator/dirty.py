"""Whether a task still matches its service's spec, or a rolling update must replace it."""

from __future__ import annotations

from manager.orchestrator.eligibility import meets_constraints
from shoal.v1 import objects_pb2, specs_pb2


def _without_constraints(spec: specs_pb2.TaskSpec) -> specs_pb2.TaskSpec:
    copy = specs_pb2.TaskSpec()
    copy.CopyFrom(spec)
    copy.placement.ClearField("constraints")
    return copy


def is_dirty(
    service: objects_pb2.Service, task: objects_pb2.Task, node: objects_pb2.Node | None
) -> bool:
    """True when the task was made from another spec than the service's current one.

    Equal spec versions mean clean. Otherwise the task template and the endpoint spec are
    compared (a force_update bump is a change); a change of placement constraints alone
    leaves a task clean when its node meets the new constraints, as in SwarmKit.
    """
    if (
        task.HasField("spec_version")
        and service.HasField("spec_version")
        and task.spec_version.index == service.spec_version.index
    ):
        return False
    if task.HasField("endpoint") and task.endpoint.spec != service.spec.endpoint:
        return True
    wanted = service.spec.task
    if task.spec == wanted:
        return False
    return not (
        node is not None
        and _without_constraints(task.spec) == _without_constraints(wanted)
        and meets_constraints(node, wanted)
    )
