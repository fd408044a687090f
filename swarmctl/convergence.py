"""Waiting for a service to converge: "web: 3/6 running", redrawn in place on a terminal.

Counts the tasks made from the service's current spec that the agents report RUNNING and
stops when they reach the desired number, when one of them fails (its error is the reason),
or when the deadline passes (exit 1 with what is missing). During a rolling update a failed
task is the updater's business (its failure action): the wait follows the update's state
instead, and ends in error when the update pauses or, once the service has converged again,
when it was rolled back (as `docker service update` reports it).

The Control API has no watch, so this polls: every 20 ms while the first second lasts or the
progress line keeps changing (a service on nodes that have its image converges within a
second, and noticing it late would be most of the wait), then backing off to 200 ms while
nothing changes (a pull, a rolling update's delay), so a long wait costs the manager little.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from shoal.v1 import control_pb2, objects_pb2, specs_pb2, types_pb2
from swarmctl.connection import Control
from swarmctl.errors import SwarmctlError

FAST_POLL_S = 0.02
SLOW_POLL_S = 0.2
POLL_BACKOFF = 1.5
# Polls stay fast for this long after the start and after each change of the progress line.
FAST_FOR_S = 1.0
FAILED_STATES = (types_pb2.FAILED, types_pb2.REJECTED)


UpdateState = types_pb2.UpdateStatus
IN_PROGRESS = (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED)
PAUSED = {UpdateState.PAUSED: "update paused", UpdateState.ROLLBACK_PAUSED: "rollback paused"}


@dataclass(frozen=True)
class Progress:
    running: int
    desired: int
    failure: str = ""
    # A rolling update (or rollback) still replacing tasks or watching the new ones.
    updating: bool = False
    # The update was rolled back: converging (to the old spec) still ends in this error.
    rolled_back: str = ""

    @property
    def done(self) -> bool:
        return not self.failure and not self.updating and self.running == self.desired

    def describe(self, name: str, state: int = UpdateState.UNKNOWN) -> str:
        if state == UpdateState.ROLLBACK_STARTED:
            updating = " (rolling back)"
        else:
            updating = " (update in progress)" if self.updating else ""
        return f"{name}: {self.running}/{self.desired} running{updating}"


def _placement_free(spec: specs_pb2.TaskSpec) -> specs_pb2.TaskSpec:
    copy = specs_pb2.TaskSpec()
    copy.CopyFrom(spec)
    copy.placement.ClearField("constraints")
    return copy


def is_current(service: objects_pb2.Service, task: objects_pb2.Task) -> bool:
    """Made from the service's spec: same spec version, or a spec the orchestrator keeps
    (a scale changes the version but not the task template; a change of constraints alone
    keeps the tasks whose nodes still qualify)."""
    if task.spec_version.index == service.spec_version.index:
        return True
    if task.HasField("endpoint") and task.endpoint.spec != service.spec.endpoint:
        return False
    return _placement_free(task.spec) == _placement_free(service.spec.task)


def progress_of(
    service: objects_pb2.Service,
    tasks: list[objects_pb2.Task],
    written_spec: specs_pb2.ServiceSpec | None = None,
) -> Progress:
    """How far `service` is. `written_spec`: the spec this command wrote; a rollback that
    replaced it (the update failed) is an error once the service has converged again."""
    current = [task for task in tasks if is_current(service, task)]
    wanted = [task for task in current if task.desired_state == types_pb2.RUNNING]
    running = sum(task.status.state == types_pb2.RUNNING for task in wanted)
    if service.spec.HasField("replicated_service"):
        desired = service.spec.replicated_service.replicas
    else:
        desired = len(wanted)
    update = service.update_status
    message = update.message or "no reason given"
    if update.state in PAUSED:
        return Progress(running, desired, f"{PAUSED[update.state]}: {message}")
    if update.state in IN_PROGRESS:
        return Progress(running, desired, updating=True)
    for task in current:
        if task.status.state in FAILED_STATES:
            reason = (
                task.status.err
                or task.status.message
                or types_pb2.TaskState.Name(task.status.state)
            )
            return Progress(running, desired, f"task {task.id} failed: {reason}")
    rolled_back = (
        update.state == UpdateState.ROLLBACK_COMPLETED
        and written_spec is not None
        and service.spec != written_spec
    )
    if not rolled_back:
        return Progress(running, desired)
    # The manager says why ("update rolled back due to failure of task ...; rollback completed").
    why = message if message.startswith("update rolled back") else f"update rolled back: {message}"
    return Progress(running, desired, rolled_back=why)


def wait_converged(
    control: Control,
    service_id: str,
    timeout_s: float,
    written_version: int = 0,
    written_spec: specs_pb2.ServiceSpec | None = None,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Polls until converged; raises SwarmctlError on a failed task or at the deadline.

    `written_version` is the service's meta.version our write produced: a follower that has
    not applied it yet shows an older service, which must not count as converged.
    `written_spec` is the spec it wrote (see progress_of).
    """
    out = out or sys.stderr
    started = clock()
    deadline = started + timeout_s
    interactive = out.isatty()
    line = ""
    poll = PollInterval(started)
    for _ in range(int(timeout_s / FAST_POLL_S) + 2):
        service = _service(control, service_id)
        if service is None or service.meta.version < written_version:  # a lagging follower
            line = f"{service_id}: waiting for the service to show"
            progress = Progress(0, 1)
        else:
            filters = control_pb2.ListTasksRequest.Filters(service_ids=[service_id])
            request = control_pb2.ListTasksRequest(filters=filters)
            tasks = list(control.call("ListTasks", request).tasks)
            progress = progress_of(service, tasks, written_spec)
            line = progress.describe(service.spec.annotations.name, service.update_status.state)
        if interactive:
            out.write(f"\r\x1b[K{line}")
            out.flush()
        if progress.failure:
            _finish(out, interactive, line)
            raise SwarmctlError(f"{line}; {progress.failure}")
        if progress.done:
            _finish(out, interactive, line)
            if progress.rolled_back:
                raise SwarmctlError(f"{line}; {progress.rolled_back}")
            return
        now = clock()
        if now >= deadline:
            break
        time.sleep(min(poll.next(line, now), deadline - now))
    _finish(out, interactive, line)
    raise SwarmctlError(f"not converged after {timeout_s:g}s: {line}")


class PollInterval:
    """How long to wait before the next poll: FAST_POLL_S while the progress line changed
    within FAST_FOR_S (or the wait began within it), then longer by POLL_BACKOFF each
    unchanged poll, up to SLOW_POLL_S."""

    def __init__(self, started: float) -> None:
        self._line = ""
        self._changed_at = started
        self._interval = FAST_POLL_S

    def next(self, line: str, now: float) -> float:
        if line != self._line:
            self._line, self._changed_at = line, now
        if now - self._changed_at < FAST_FOR_S:
            self._interval = FAST_POLL_S
        else:
            self._interval = min(self._interval * POLL_BACKOFF, SLOW_POLL_S)
        return self._interval


def _service(control: Control, service_id: str) -> objects_pb2.Service | None:
    filters = control_pb2.ListServicesRequest.Filters(id_prefixes=[service_id])
    request = control_pb2.ListServicesRequest(filters=filters)
    found = [s for s in control.call("ListServices", request).services if s.id == service_id]
    return found[0] if found else None


def _finish(out: TextIO, interactive: bool, line: str) -> None:
    out.write("\n" if interactive else f"{line}\n")
    out.flush()
