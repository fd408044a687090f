from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from shoal.v1 import objects_pb2, types_pb2
from swarmctl.connection import Target, connect
from swarmctl.convergence import (
    FAST_POLL_S,
    POLL_BACKOFF,
    SLOW_POLL_S,
    PollInterval,
    progress_of,
    wait_converged,
)
from swarmctl.output import humanize_since, title
from tests.unit.swarmctl.conftest import Harness


def service(version: int, replicas: int, image: str = "b:1") -> objects_pb2.Service:
    found = objects_pb2.Service(id="s")
    found.spec_version.index = version
    found.spec.replicated_service.replicas = replicas
    found.spec.task.container.image = image
    return found


def task(version: int, state: int, image: str = "b:1") -> objects_pb2.Task:
    made = objects_pb2.Task(id=f"t{version}{state}", desired_state=types_pb2.RUNNING)
    made.spec_version.index = version
    made.spec.container.image = image
    made.status.state = state  # type: ignore[assignment]
    return made


def test_a_scale_keeps_the_tasks_of_the_same_template_current() -> None:
    progress = progress_of(service(2, 2), [task(1, types_pb2.RUNNING), task(2, types_pb2.RUNNING)])
    assert (progress.running, progress.desired, progress.done) == (2, 2, True)


def test_tasks_of_an_old_image_do_not_count() -> None:
    progress = progress_of(service(2, 1, "b:2"), [task(1, types_pb2.RUNNING, "b:1")])
    assert (progress.running, progress.done) == (0, False)


def test_an_update_in_progress_is_not_done_and_a_failed_task_is_reported() -> None:
    updating = service(1, 1)
    updating.update_status.state = types_pb2.UpdateStatus.UPDATING
    progress = progress_of(updating, [task(1, types_pb2.RUNNING)])
    assert not progress.done and progress.describe("web") == "web: 1/1 running (update in progress)"
    failed = task(1, types_pb2.REJECTED)
    failed.status.err = "pull failed"
    assert progress_of(service(1, 1), [failed]).failure == f"task {failed.id} failed: pull failed"


def test_during_an_update_a_failed_task_is_the_updaters_business() -> None:
    updating = service(2, 2, "b:2")
    updating.update_status.state = types_pb2.UpdateStatus.UPDATING
    failed = task(2, types_pb2.REJECTED, "b:2")
    progress = progress_of(updating, [failed, task(1, types_pb2.RUNNING)])
    assert not progress.failure and not progress.done and progress.updating


def test_a_paused_update_or_rollback_ends_the_wait_with_its_message() -> None:
    paused = service(2, 2, "b:2")
    paused.update_status.state = types_pb2.UpdateStatus.PAUSED
    paused.update_status.message = "update paused due to failure of task x"
    assert progress_of(paused, []).failure == (
        "update paused: update paused due to failure of task x"
    )
    paused.update_status.state = types_pb2.UpdateStatus.ROLLBACK_PAUSED
    assert progress_of(paused, []).failure.startswith("rollback paused: ")


def test_a_rollback_of_the_written_spec_is_an_error_once_converged_again() -> None:
    written = service(2, 1, "b:2").spec
    rolled_back = service(3, 1, "b:1")  # the previous spec is back
    rolled_back.update_status.state = types_pb2.UpdateStatus.ROLLBACK_STARTED
    starting = progress_of(rolled_back, [task(3, types_pb2.STARTING, "b:1")], written)
    assert starting.describe("web", rolled_back.update_status.state) == (
        "web: 0/1 running (rolling back)"
    )
    rolled_back.update_status.state = types_pb2.UpdateStatus.ROLLBACK_COMPLETED
    rolled_back.update_status.message = "update rolled back due to failure of task t; done"
    done = progress_of(rolled_back, [task(3, types_pb2.RUNNING, "b:1")], written)
    assert done.done
    assert done.rolled_back == "update rolled back due to failure of task t; done"
    rolled_back.update_status.message = "rollback completed"
    assert progress_of(rolled_back, [], written).rolled_back == (
        "update rolled back: rollback completed"
    )
    # An explicit rollback wrote that spec itself; a later scale keeps the old status.
    assert not progress_of(rolled_back, [], rolled_back.spec).rolled_back


def test_relative_times_and_titles() -> None:
    stamp = Timestamp(seconds=1000)
    assert humanize_since(stamp, 1005.5) == "5 seconds ago"
    assert humanize_since(stamp, 1001) == "1 second ago"
    assert humanize_since(stamp, 1000 + 3 * 3600) == "3 hours ago"
    assert humanize_since(stamp, 1000.2) == "Less than a second ago"
    assert humanize_since(Timestamp(), 5) == ""
    assert title("ON_FAILURE") == "On-failure"


def test_secrets_from_a_file_or_stdin_and_a_missing_file(
    swarmctl: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "pw"
    source.write_bytes(b"hunter2")
    assert swarmctl.run("secret", "create", "pw", str(source), "--label", "a=b").code == 0
    assert swarmctl.fake.requests[-1].spec.data == b"hunter2"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"from-stdin")))
    assert swarmctl.run("secret", "create", "pw2", "-").code == 0
    assert swarmctl.fake.requests[-1].spec.data == b"from-stdin"
    listed = json.loads(swarmctl.run("secret", "ls", "--format", "json").out)
    assert sorted(s["spec"]["annotations"]["name"] for s in listed) == ["pw", "pw2"]
    missing = swarmctl.run("secret", "create", "pw3", str(tmp_path / "absent"))
    assert missing.code == 1
    assert (
        missing.err
        == f"swarmctl: error: cannot read {tmp_path}/absent: No such file or directory\n"
    )
    assert swarmctl.run("secret", "rm", "pw").out == "pw\n"
    assert [s.spec.annotations.name for s in swarmctl.fake.secrets.values()] == ["pw2"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_redrawn_in_place_on_a_terminal(swarmctl: Harness) -> None:
    swarmctl.fake.start_state = types_pb2.RUNNING
    created = swarmctl.run("service", "create", "-d", "--name", "web", "--replicas", "2", "b:1")
    service_id = created.out.strip()
    screen = Terminal()
    with connect(Target(socket=swarmctl.socket)) as control:
        wait_converged(control, service_id, timeout_s=5, out=screen)
    assert screen.getvalue() == "\r\x1b[Kweb: 2/2 running\n"


def test_polls_are_fast_while_things_change_then_back_off() -> None:
    poll = PollInterval(started=100.0)
    assert poll.next("web: 0/3 running", 100.0) == FAST_POLL_S
    assert poll.next("web: 0/3 running", 100.9) == FAST_POLL_S  # the first second
    slower = [poll.next("web: 0/3 running", 101.0 + n) for n in range(8)]
    assert slower[0] == pytest.approx(FAST_POLL_S * POLL_BACKOFF)
    assert slower == sorted(slower) and slower[-1] == SLOW_POLL_S  # capped
    assert poll.next("web: 1/3 running", 110.0) == FAST_POLL_S  # progress: fast again
    assert poll.next("web: 1/3 running", 110.5) == FAST_POLL_S
    assert poll.next("web: 1/3 running", 111.0) > FAST_POLL_S
