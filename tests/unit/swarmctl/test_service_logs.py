"""`swarmctl service logs` / `task logs` against fake Control and Logs services on a unix
socket: Docker's line prefixes, options on the wire, stderr lines, errors as one line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from shoal.v1 import control_pb2_grpc, logs_pb2, logs_pb2_grpc, objects_pb2, types_pb2
from swarmctl.cli import main
from swarmctl.errors import SwarmctlError
from swarmctl.logs import LogFormat, format_line, parse_tail
from tests.unit.swarmctl.conftest import Result
from tests.unit.swarmctl.fake_control import FakeControl
from tests.unit.swarmctl.test_commands import add_service


@dataclass
class FakeLogs(logs_pb2_grpc.LogsServicer):
    """Answers every subscription with `batches`, then `error` (a status details) if set."""

    batches: list[list[logs_pb2.LogMessage]] = field(default_factory=list)
    error: str = ""
    requests: list[logs_pb2.SubscribeLogsRequest] = field(default_factory=list)

    def SubscribeLogs(self, request: Any, context: Any) -> Iterator[logs_pb2.SubscribeLogsMessage]:
        self.requests.append(request)
        for batch in self.batches:
            yield logs_pb2.SubscribeLogsMessage(messages=batch)
        if self.error:
            context.abort(grpc.StatusCode.UNAVAILABLE, self.error)


@dataclass
class Cli:
    fake: FakeControl
    logs: FakeLogs
    socket: str
    capsys: pytest.CaptureFixture[str]

    def run(self, *argv: str) -> Result:
        with pytest.raises(SystemExit) as exited:
            main(["-s", self.socket, *argv])
        out, err = self.capsys.readouterr()
        code = exited.value.code
        return Result(code if isinstance(code, int) else 1, out, err)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    control, logs = FakeControl(), FakeLogs()  # type: ignore[abstract]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    control_pb2_grpc.add_ControlServicer_to_server(control, server)
    logs_pb2_grpc.add_LogsServicer_to_server(logs, server)
    socket = str(tmp_path / "control.sock")
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    try:
        yield Cli(control, logs, socket, capsys)
    finally:
        server.stop(grace=None)


def message(
    task: objects_pb2.Task, text: str, stream: int = logs_pb2.LOG_STREAM_STDOUT
) -> logs_pb2.LogMessage:
    line = logs_pb2.LogMessage(
        context=logs_pb2.LogContext(
            service_id=task.service_id, node_id=task.node_id, task_id=task.id
        ),
        stream=stream,  # type: ignore[arg-type]
        data=text.encode(),
    )
    line.timestamp.FromJsonString("2024-01-02T15:04:05.000000001Z")
    return line


def web_with_tasks(cli: Cli, slots: tuple[int, ...]) -> dict[int, objects_pb2.Task]:
    web = add_service(cli, "web", len(slots))  # type: ignore[arg-type]
    node = cli.fake.add_node("node2")
    for slot in slots:
        cli.fake.add_task(web, slot, types_pb2.RUNNING, node_id=node.id)
    return {t.slot: t for t in cli.fake.tasks.values()}


def test_lines_carry_docker_style_task_names(cli: Cli) -> None:
    tasks = web_with_tasks(cli, (1, 10))
    cli.logs.batches = [
        [message(tasks[1], "hello\n"), message(tasks[10], "partial")],
        [message(tasks[1], "oops\n", logs_pb2.LOG_STREAM_STDERR)],
    ]
    result = cli.run("service", "logs", "web")
    assert result.code == 0, result.err
    one, ten = tasks[1].id[:12], tasks[10].id[:12]
    assert result.out == (
        f"web.1.{one}@node2     | hello\n"  # padded to the width of slot 10
        f"web.10.{ten}@node2    | partial\n"
    )
    assert result.err == f"web.1.{one}@node2     | oops\n"
    [request] = cli.logs.requests
    assert list(request.selector.service_ids) == [tasks[1].service_id]
    assert request.options.tail == -1 and not request.options.follow
    assert not request.options.HasField("since")

    plain = cli.run("service", "logs", "--no-task-ids", "-t", "web")
    assert plain.out.splitlines()[0] == "web.1@node2     | 2024-01-02T15:04:05.000000001Z hello"
    raw = cli.run("service", "logs", "--raw", "web")
    assert raw.out == "hello\npartial\n"
    whole = cli.run("service", "logs", "--no-trunc", "web")
    assert whole.out.startswith(f"web.1.{tasks[1].id}@node2")


def test_options_reach_the_manager(cli: Cli) -> None:
    tasks = web_with_tasks(cli, (1,))
    before = time.time()
    assert cli.run("service", "logs", "-f", "--tail", "5", "--since", "10m", "web").code == 0
    options = cli.logs.requests[-1].options
    assert options.follow and options.tail == 5
    assert before - 601 < options.since.ToNanoseconds() / 1e9 < time.time() - 599

    assert cli.run("task", "logs", "--tail", "0", tasks[1].id[:10]).code == 0
    request = cli.logs.requests[-1]
    assert list(request.selector.task_ids) == [tasks[1].id] and request.options.tail == 0


def test_errors_are_one_line(cli: Cli) -> None:
    tasks = web_with_tasks(cli, (1,))
    unknown = cli.run("service", "logs", "nope")
    assert (unknown.code, unknown.out) == (1, "")
    assert unknown.err == "swarmctl: error: no such service: nope\n"
    assert not cli.logs.requests

    bad_tail = cli.run("service", "logs", "--tail", "-3", "web")
    assert bad_tail.code == 1
    assert "invalid --tail '-3': expected a number of lines or all" in bad_tail.err
    bad_since = cli.run("service", "logs", "--since", "yesterday", "web")
    assert bad_since.code == 1 and "invalid --since 'yesterday'" in bad_since.err

    # Lines first, then why the stream is incomplete.
    cli.logs.batches = [[message(tasks[1], "hello\n")]]
    cli.logs.error = "incomplete log stream: some logs could not be read: node n9 is not connected"
    cut = cli.run("service", "logs", "web")
    assert cut.code == 1 and cut.out.endswith("| hello\n")
    assert cut.err == f"swarmctl: error: {cli.logs.error}\n"


def test_parsing_tail() -> None:
    assert parse_tail("all") == -1 and parse_tail("7") == 7
    with pytest.raises(SwarmctlError):
        parse_tail("x")
    line = logs_pb2.LogMessage(data=b"x")
    assert format_line(line, "p | ", LogFormat(raw=True)) == "x\n"
