"""A node spec: name and labels, desired role, membership, availability."""

from __future__ import annotations

from manager.controlapi.validation.fields import (
    check_enum,
    check_labels,
    check_object_name,
    check_spec_size,
)
from shoal.v1 import specs_pb2, types_pb2

MAX_NODE_SPEC_BYTES = 64 * 1024


def check_node_spec(spec: specs_pb2.NodeSpec, field: str = "spec") -> None:
    check_spec_size(field, spec, MAX_NODE_SPEC_BYTES)
    # Unnamed nodes go by their hostname.
    if spec.annotations.name:
        check_object_name(f"{field}.annotations.name", spec.annotations.name, max_chars=253)
    check_labels(f"{field}.annotations.labels", spec.annotations.labels)
    check_enum(f"{field}.desired_role", spec.desired_role, types_pb2.NodeRole.DESCRIPTOR)
    check_enum(f"{field}.membership", spec.membership, specs_pb2.NodeSpec.Membership.DESCRIPTOR)
    check_enum(
        f"{field}.availability", spec.availability, specs_pb2.NodeSpec.Availability.DESCRIPTOR
    )
