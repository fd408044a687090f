"""Hostile requests through a real Control server: huge strings, floods of labels, unicode,
negative durations, NaN ratios, unknown enum numbers. Each is refused with a short message
naming the field, and nothing is written."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from shoal.v1 import control_pb2, objects_pb2, specs_pb2
from tests.unit.manager.controlapi.helpers import Control, refused, service_spec

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def spoiled(fn: Callable[[specs_pb2.ServiceSpec], object]) -> specs_pb2.ServiceSpec:
    spec = service_spec()
    fn(spec)
    return spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            spoiled(lambda s: setattr(s.annotations, "name", "x" * 1_000_000)),
            "spec: is 1000",
        ),
        (
            spoiled(lambda s: setattr(s.annotations, "name", "x" * 100_000)),
            "spec.annotations.name: invalid name 'xxxx",
        ),
        (
            spoiled(lambda s: s.annotations.labels.update({f"k{i}": "" for i in range(100_000)})),
            "spec: is ",
        ),
        (
            spoiled(lambda s: s.annotations.labels.update({f"k{i}": "" for i in range(300)})),
            "spec.annotations.labels: 300 labels",
        ),
        (spoiled(lambda s: setattr(s.annotations, "name", "wéb")), "spec.annotations.name"),
        (
            spoiled(lambda s: s.annotations.labels.update({"k": "\u0000"})),
            "spec.annotations.labels['k']: contains the control character",
        ),
        (
            spoiled(lambda s: setattr(s.task.restart.delay, "seconds", -10)),
            "spec.task.restart.delay: must not be negative (got -10s)",
        ),
        (
            spoiled(lambda s: setattr(s.task.container.stop_grace_period, "seconds", 10**12)),
            "spec.task.container.stop_grace_period: is not a valid duration",
        ),
        (
            spoiled(lambda s: setattr(s.update, "max_failure_ratio", float("nan"))),
            "spec.update.max_failure_ratio: must be in [0, 1] (got nan)",
        ),
        (
            spoiled(lambda s: setattr(s.update, "max_failure_ratio", float("inf"))),
            "spec.update.max_failure_ratio: must be in [0, 1] (got inf)",
        ),
        (
            spoiled(lambda s: setattr(s.update, "failure_action", 2**31 - 1)),
            "spec.update.failure_action: unknown value 2147483647",
        ),
        (
            spoiled(lambda s: s.task.placement.constraints.append("node.labels.a==" + "b" * 5000)),
            "spec.task.placement.constraints[0]: is 5015 characters, more than 1024",
        ),
        (
            spoiled(lambda s: s.task.container.env.append("PATH=/bin\x00/evil")),
            "spec.task.container.env[0]: contains a NUL character",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_hostile_service_specs(
    control: Control, spec: specs_pb2.ServiceSpec, message: str
) -> None:
    index = control.store.index
    details = await refused(
        control.stub.CreateService(control_pb2.CreateServiceRequest(spec=spec)), INVALID, message
    )
    assert details.startswith(message)
    assert len(details) < 500
    assert control.store.index == index


async def test_unicode_labels_are_kept_exactly(control: Control) -> None:
    spec = service_spec()
    spec.annotations.labels.update({"🔥": "ünïcödé ✓", "rtl\u202e": "\u202etxt"})
    created = (
        await control.stub.CreateService(control_pb2.CreateServiceRequest(spec=spec))
    ).service
    assert created.spec.annotations.labels == spec.annotations.labels
    assert control.get(objects_pb2.Service, created.id).spec == spec


async def test_control_characters_in_ids_are_invalid(control: Control) -> None:
    await refused(
        control.stub.GetService(control_pb2.GetServiceRequest(service_id="a\nb")),
        INVALID,
        "service_id: contains the control character '\\n'",
    )


async def test_large_config_within_the_grpc_limit_is_refused_by_size(control: Control) -> None:
    spec = specs_pb2.ConfigSpec(data=b"\xff" * (3 * 1024 * 1024))
    spec.annotations.name = "big"
    await refused(
        control.stub.CreateConfig(control_pb2.CreateConfigRequest(spec=spec)),
        INVALID,
        "spec.data: is 3145728 bytes, more than 1024000",
    )
    assert control.store.view(lambda tx: tx.count(objects_pb2.Config)) == 0


async def test_a_request_over_the_grpc_limit_is_refused_by_grpc(control: Control) -> None:
    """gRPC itself refuses messages over 4 MiB before the servicer sees them."""
    spec = specs_pb2.ConfigSpec(data=b"x" * (5 * 1024 * 1024))
    spec.annotations.name = "huge"
    await refused(
        control.stub.CreateConfig(control_pb2.CreateConfigRequest(spec=spec)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert control.store.view(lambda tx: tx.count(objects_pb2.Config)) == 0
