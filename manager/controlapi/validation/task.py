"""A task spec (a service's template): runtime, resources, restart policy, placement,
networks and log driver."""

from __future__ import annotations

from collections.abc import Sequence

from common.errors import shown
from manager.controlapi.errors import InvalidArgument
from manager.controlapi.validation.container import MAX_LIST_ITEMS, check_container
from manager.controlapi.validation.fields import (
    check_count,
    check_driver,
    check_enum,
    check_interface,
    check_labels,
    check_not_negative,
    check_required,
    check_text,
    duration_nanos,
)
from manager.scheduler import ConstraintError, PreferenceError, parse_constraint, parse_spread
from shoal.v1 import specs_pb2, types_pb2

# SwarmKit's minimums: smaller values are mistakes (a CPU count given in cores, memory in MB).
MIN_NANO_CPUS = 1_000_000
MIN_MEMORY_BYTES = 4 * 1024 * 1024


def check_task_spec(field: str, task: specs_pb2.TaskSpec) -> None:
    if task.WhichOneof("runtime") != "container":
        raise InvalidArgument(f"{field}.container", "must be set (the task's runtime)")
    check_container(f"{field}.container", task.container)
    if task.HasField("resources"):
        check_resources(f"{field}.resources", task.resources)
    if task.HasField("restart"):
        check_restart_policy(f"{field}.restart", task.restart)
    if task.HasField("placement"):
        check_placement(f"{field}.placement", task.placement)
    check_network_attachments(f"{field}.networks", task.networks)
    if task.HasField("log_driver"):
        check_driver(f"{field}.log_driver", task.log_driver)


def check_resources(field: str, resources: types_pb2.ResourceRequirements) -> None:
    limits, reservations = resources.limits, resources.reservations
    for name, part in (("limits", limits), ("reservations", reservations)):
        _check_amount(f"{field}.{name}.nano_cpus", part.nano_cpus, MIN_NANO_CPUS)
        _check_amount(f"{field}.{name}.memory_bytes", part.memory_bytes, MIN_MEMORY_BYTES)
    if limits.generic:
        raise InvalidArgument(
            f"{field}.limits.generic", "generic resources can be reserved, not limited"
        )
    for amount in ("nano_cpus", "memory_bytes"):
        limit, reserved = getattr(limits, amount), getattr(reservations, amount)
        if limit and reserved > limit:
            raise InvalidArgument(
                f"{field}.reservations.{amount}",
                f"{reserved} is more than the limit {limit} ({field}.limits.{amount})",
            )
    _check_generic(f"{field}.reservations.generic", reservations.generic)


def _check_amount(field: str, value: int, minimum: int) -> None:
    check_not_negative(field, value)
    if 0 < value < minimum:
        raise InvalidArgument(field, f"{value} is less than the minimum of {minimum}")


def _check_generic(field: str, generic: Sequence[types_pb2.GenericResource]) -> None:
    if len(generic) > MAX_LIST_ITEMS:
        raise InvalidArgument(field, f"{len(generic)} entries, more than {MAX_LIST_ITEMS}")
    for number, resource in enumerate(generic):
        path = f"{field}[{number}]"
        check_required(f"{path}.kind", resource.kind)
        check_text(f"{path}.kind", resource.kind, 255)
        which = resource.WhichOneof("value")
        if which is None:
            raise InvalidArgument(path, "must set named_value or discrete_value")
        if which == "named_value":
            check_required(f"{path}.named_value", resource.named_value)
            check_text(f"{path}.named_value", resource.named_value, 255)
        elif resource.discrete_value <= 0:
            raise InvalidArgument(
                f"{path}.discrete_value", f"must be positive (got {resource.discrete_value})"
            )


def check_restart_policy(field: str, policy: types_pb2.RestartPolicy) -> None:
    check_enum(f"{field}.condition", policy.condition, types_pb2.RestartPolicy.Condition.DESCRIPTOR)
    if policy.HasField("delay"):
        duration_nanos(f"{field}.delay", policy.delay)
    if policy.HasField("window"):
        duration_nanos(f"{field}.window", policy.window)
    check_count(f"{field}.max_attempts", policy.max_attempts)


def check_placement(field: str, placement: types_pb2.Placement) -> None:
    for number, expression in enumerate(placement.constraints):
        path = f"{field}.constraints[{number}]"
        check_text(path, expression, 1024)
        try:
            parse_constraint(expression)
        except ConstraintError as exc:
            raise InvalidArgument(path, str(exc)) from None
    for number, preference in enumerate(placement.preferences):
        path = f"{field}.preferences[{number}]"
        if preference.WhichOneof("preference") != "spread":
            raise InvalidArgument(path, "must set spread (the only kind of preference)")
        descriptor = preference.spread.spread_descriptor
        check_text(f"{path}.spread.spread_descriptor", descriptor, 1024)
        try:
            parse_spread(descriptor)
        except PreferenceError as exc:
            raise InvalidArgument(f"{path}.spread.spread_descriptor", str(exc)) from None
    for number, platform in enumerate(placement.platforms):
        path = f"{field}.platforms[{number}]"
        check_text(f"{path}.os", platform.os, 64)
        check_text(f"{path}.architecture", platform.architecture, 64)
        if not platform.os and not platform.architecture:
            raise InvalidArgument(path, "must set os, architecture or both")
    check_count(f"{field}.max_replicas", placement.max_replicas)


def check_network_attachments(
    field: str, attachments: Sequence[specs_pb2.NetworkAttachmentConfig]
) -> None:
    if len(attachments) > MAX_LIST_ITEMS:
        raise InvalidArgument(field, f"{len(attachments)} entries, more than {MAX_LIST_ITEMS}")
    targets: dict[str, int] = {}
    for number, attachment in enumerate(attachments):
        path = f"{field}[{number}]"
        check_required(f"{path}.target", attachment.target)
        check_text(f"{path}.target", attachment.target, 255)
        if attachment.target in targets:
            raise InvalidArgument(
                f"{path}.target",
                f"network {shown(attachment.target)} is also attached by "
                f"{field}[{targets[attachment.target]}]",
            )
        targets[attachment.target] = number
        for alias_number, alias in enumerate(attachment.aliases):
            alias_path = f"{path}.aliases[{alias_number}]"
            check_required(alias_path, alias)
            check_text(alias_path, alias, 253)
            if any(char.isspace() for char in alias):
                raise InvalidArgument(alias_path, f"{shown(alias)} contains white space")
        for address_number, address in enumerate(attachment.addresses):
            check_interface(f"{path}.addresses[{address_number}]", address)
        check_labels(f"{path}.driver_attachment_opts", attachment.driver_attachment_opts)
