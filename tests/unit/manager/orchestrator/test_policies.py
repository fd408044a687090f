"""Pure parts: dirtiness of a task, policies with their defaults, settings validation, the
agenda of work keys."""

from __future__ import annotations

import math

import pytest

from manager.orchestrator import (
    OrchestratorConfig,
    OrchestratorConfigError,
    RestartPolicy,
    UpdatePolicy,
    is_dirty,
)
from manager.orchestrator.reconciler import Agenda
from shoal.v1 import objects_pb2, specs_pb2, types_pb2
from tests.unit.manager.orchestrator.harness import duration, node, service_spec, update_config


def service_and_task(version: int = 7) -> tuple[objects_pb2.Service, objects_pb2.Task]:
    service = objects_pb2.Service(
        id="s", spec=service_spec("web", constraints=["node.labels.zone==x"])
    )
    service.spec_version.index = version
    task = objects_pb2.Task(id="t", service_id="s", slot=1, spec=service.spec.task)
    task.spec_version.index = version
    task.endpoint.spec.CopyFrom(service.spec.endpoint)
    return service, task


def test_a_task_of_the_same_spec_version_is_clean() -> None:
    service, task = service_and_task()
    service.spec.task.container.image = "other"  # ignored: versions match
    assert not is_dirty(service, task, None)


def test_a_task_of_another_version_is_compared_by_content() -> None:
    service, task = service_and_task()
    service.spec_version.index = 8  # e.g. a scale: same template
    assert not is_dirty(service, task, None)
    service.spec.task.container.image = "registry:5000/app:2"
    assert is_dirty(service, task, None)


def test_force_update_makes_a_task_dirty() -> None:
    service, task = service_and_task()
    service.spec_version.index = 8
    service.spec.task.force_update = 1
    assert is_dirty(service, task, None)


def test_an_endpoint_change_makes_a_task_dirty() -> None:
    service, task = service_and_task()
    service.spec_version.index = 8
    service.spec.endpoint.ports.add(target_port=80, published_port=8080)
    assert is_dirty(service, task, None)


def test_a_constraint_change_alone_keeps_a_task_on_a_matching_node() -> None:
    service, task = service_and_task()
    service.spec_version.index = 8
    del service.spec.task.placement.constraints[:]
    service.spec.task.placement.constraints.append("node.labels.rack==1")
    assert not is_dirty(service, task, node("a", labels={"rack": "1"}))
    assert is_dirty(service, task, node("b", labels={"rack": "2"}))
    assert is_dirty(service, task, None)


def test_restart_policy_defaults_and_conditions() -> None:
    unset = RestartPolicy.of(specs_pb2.TaskSpec(), default_delay_s=5.0)
    assert unset == RestartPolicy(types_pb2.RestartPolicy.ANY, 5.0, 0, 0.0)
    spec = specs_pb2.TaskSpec()
    spec.restart.condition = types_pb2.RestartPolicy.ON_FAILURE
    spec.restart.delay.CopyFrom(duration(0))
    spec.restart.window.CopyFrom(duration(1.5))
    policy = RestartPolicy.of(spec, default_delay_s=5.0)
    assert (policy.delay_s, policy.window_s) == (0.0, 1.5)
    complete = objects_pb2.Task(status=types_pb2.TaskStatus(state=types_pb2.COMPLETE))
    failed = objects_pb2.Task(status=types_pb2.TaskStatus(state=types_pb2.FAILED))
    assert not policy.wants_restart(complete) and policy.wants_restart(failed)


def test_update_policy_defaults_and_the_rollback_config() -> None:
    assert UpdatePolicy.of(None) == UpdatePolicy(
        parallelism=1,
        delay_s=0.0,
        failure_action=types_pb2.UpdateConfig.PAUSE,
        monitor_s=5.0,
        max_failure_ratio=0.0,
        order=types_pb2.UpdateConfig.STOP_FIRST,
    )
    assert UpdatePolicy.of(types_pb2.UpdateConfig()).parallelism == 0  # set: all at once
    service = objects_pb2.Service()
    service.spec.update.CopyFrom(update_config(parallelism=3))
    service.spec.rollback.CopyFrom(update_config(parallelism=4))
    service.previous_spec.rollback.CopyFrom(update_config(parallelism=5, monitor=1.0))
    assert UpdatePolicy.for_service(service, rolling_back=False).parallelism == 3
    rollback = UpdatePolicy.for_service(service, rolling_back=True)
    assert (rollback.parallelism, rollback.monitor_s) == (5, 1.0)
    service.ClearField("previous_spec")
    assert UpdatePolicy.for_service(service, rolling_back=True).parallelism == 4


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("default_restart_delay_s", -1.0, "must be finite and >= 0"),
        ("update_start_timeout_s", math.inf, "must be finite and >= 0"),
        ("default_history_limit", "5", "must be a number"),
        ("retry_delay_s", True, "must be a number"),
        ("max_retry_delay_s", 0.01, "is below retry_delay_s"),
        ("max_changes_per_transaction", 0, "must be at least 1"),
    ],
)
def test_bad_settings_are_refused_with_their_name(
    setting: str, value: object, problem: str
) -> None:
    with pytest.raises(OrchestratorConfigError) as error:
        OrchestratorConfig(**{setting: value})  # type: ignore[arg-type]
    assert setting in str(error.value) and problem in str(error.value)


def test_the_agenda_keeps_the_earliest_time_and_hands_out_due_keys() -> None:
    agenda: Agenda[str] = Agenda()
    agenda.add("late", 10.0)
    agenda.add("soon", 5.0)
    agenda.add("late", 20.0)  # keeps 10
    agenda.add("now")
    assert agenda.next_at() == -math.inf
    assert agenda.take_due(0.0) == ["now"]
    assert agenda.next_at() == 5.0
    agenda.add("soon", 1.0)  # earlier: moves up
    assert agenda.take_due(9.0) == ["soon"]
    assert "late" in agenda and len(agenda) == 1
    assert agenda.take_due(10.0) == ["late"]
    assert agenda.next_at() is None and agenda.take_due(100.0) == []


def test_a_transaction_holds_fewer_changes_of_larger_tasks() -> None:
    """Each change writes a whole task: 40 tasks of 240 KiB in one transaction (about 10 MB)
    would pass raft's limit on one entry and be refused for ever."""
    config = OrchestratorConfig(max_changes_per_transaction=500, max_transaction_bytes=1 << 20)
    small = specs_pb2.TaskSpec()
    small.container.image = "busybox"
    assert config.changes_for(small) == 500
    large = specs_pb2.TaskSpec()
    large.container.env.extend(["A=" + "x" * (120 << 10), "B=" + "x" * (120 << 10)])
    per_transaction = config.changes_for(large)
    assert 1 <= per_transaction <= 4
    assert per_transaction * (large.ByteSize() + 2048) <= 1 << 20
    huge = specs_pb2.TaskSpec()
    huge.container.env.append("A=" + "x" * (2 << 20))
    assert config.changes_for(huge) == 1  # alone, it is up to raft to take or refuse it
