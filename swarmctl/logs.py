"""`swarmctl service logs` and `task logs`: the Logs stream, printed as Docker prints it.

Each line comes after its task's name, `web.3.abc123def456@node2    | hello`, with the
service names padded to the widest slot so the bars line up; stdout lines go to stdout,
stderr lines to stderr. Names come from Control; a task first seen while following (a
replacement, a scale-up) is looked up once when its first line arrives.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import click
import grpc

from common.timeparse import format_rfc3339, parse_since
from shoal.v1 import control_pb2, logs_pb2, logs_pb2_grpc, objects_pb2
from swarmctl.commands.node import hostname
from swarmctl.connection import Control, Target, describe_rpc_error, open_channel
from swarmctl.errors import SwarmctlError
from swarmctl.resolve import NODE, SERVICE, list_all

SHORT_ID = 12
# The broker's words for a stream cut short: shown as they are.
INCOMPLETE = "incomplete log stream"

# How a task is called in the prefix (`web.3`), given its service's name.
TaskName = Callable[[objects_pb2.Task, str], str]


@dataclass(frozen=True)
class LogFormat:
    timestamps: bool = False
    task_ids: bool = True
    truncate: bool = True
    raw: bool = False


def parse_tail(text: str) -> int:
    """`--tail`: a number of lines per task, or "all" (-1 on the wire)."""
    if text == "all":
        return -1
    if not text.isdigit():
        raise SwarmctlError(f"invalid --tail {text!r}: expected a number of lines or all")
    return int(text)


class TaskNames:
    """The prefix of each task's lines, from the tasks, services and nodes Control knows."""

    def __init__(self, control: Control, name_of: TaskName, fmt: LogFormat) -> None:
        self._control = control
        self._name_of = name_of
        self._fmt = fmt
        self._tasks: dict[str, objects_pb2.Task] = {}
        self._services: dict[str, str] = {}
        self._nodes: dict[str, str] = {}
        self._looked_up: set[str] = set()

    def load(self, tasks: Iterable[objects_pb2.Task]) -> None:
        """Know these tasks, and every service and node as they are now."""
        self._tasks.update((t.id, t) for t in tasks)
        self._services = {s.id: s.spec.annotations.name for s in list_all(self._control, SERVICE)}
        self._nodes = {n.id: hostname(n) for n in list_all(self._control, NODE)}

    def _find(self, context: logs_pb2.LogContext) -> objects_pb2.Task | None:
        task_id = context.task_id
        if task_id not in self._tasks and task_id not in self._looked_up:
            self._looked_up.add(task_id)
            filters = control_pb2.ListTasksRequest.Filters(service_ids=[context.service_id])
            found = self._control.call("ListTasks", control_pb2.ListTasksRequest(filters=filters))
            self.load(found.tasks)
        return self._tasks.get(task_id)

    def _slot_width(self, service_id: str) -> int:
        slots = [t.slot for t in self._tasks.values() if t.service_id == service_id and t.slot]
        return len(str(max(slots))) if slots else 1

    def prefix(self, context: logs_pb2.LogContext) -> str:
        task = self._find(context)
        service = self._services.get(context.service_id, context.service_id)
        node = self._nodes.get(context.node_id, context.node_id)
        task_id = context.task_id[:SHORT_ID] if self._fmt.truncate else context.task_id
        if task is None:
            return f"{service}.{task_id}@{node}    | "
        name = self._name_of(task, service)
        if self._fmt.task_ids:
            name = f"{name}.{task_id}"
        padding = (
            " " * (self._slot_width(task.service_id) - len(str(task.slot))) if task.slot else ""
        )
        return f"{name}@{node}{padding}    | "


def format_line(message: logs_pb2.LogMessage, prefix: str, fmt: LogFormat) -> str:
    text = message.data.decode("utf-8", errors="replace")
    if not text.endswith("\n"):
        text += "\n"
    if fmt.timestamps:
        text = f"{format_rfc3339(message.timestamp.ToNanoseconds())} {text}"
    return text if fmt.raw else prefix + text


def print_logs(
    channel: grpc.Channel,
    target: Target,
    request: logs_pb2.SubscribeLogsRequest,
    names: TaskNames,
    fmt: LogFormat,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> None:
    """Print the stream until it ends (or, following, until Ctrl-C)."""
    out, err = out or sys.stdout, err or sys.stderr
    call = logs_pb2_grpc.LogsStub(channel).SubscribeLogs(request)
    try:
        for batch in call:
            for message in batch.messages:
                stream = err if message.stream == logs_pb2.LOG_STREAM_STDERR else out
                stream.write(format_line(message, names.prefix(message.context), fmt))
            out.flush()
            err.flush()
    except KeyboardInterrupt:
        call.cancel()
    except grpc.RpcError as error:
        details = error.details() or ""
        if details.startswith(INCOMPLETE):
            raise SwarmctlError(details) from None
        raise SwarmctlError(describe_rpc_error(error, target)) from None


# What the command subscribes to: the selector, and the tasks it names now (for their names).
Select = Callable[[Control], tuple[logs_pb2.LogSelector, list[objects_pb2.Task]]]


def log_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Docker's `service logs` options."""
    for option in reversed(
        (
            click.option("--follow", "-f", is_flag=True, help="Keep streaming new lines."),
            click.option(
                "--tail", default="all", show_default=True, help="Last lines of each task, or all."
            ),
            click.option(
                "--since", default=None, help="Only lines since a time, or a duration ago (10m)."
            ),
            click.option("--timestamps", "-t", is_flag=True, help="Show each line's time."),
            click.option("--no-task-ids", is_flag=True, help="Leave task ids out of the names."),
            click.option("--no-trunc", is_flag=True, help="Show whole task ids."),
            click.option("--raw", is_flag=True, help="Only the lines, without task names."),
        )
    ):
        function = option(function)
    return function


def show_logs(
    ctx: click.Context,
    select: Select,
    name_of: TaskName,
    *,
    follow: bool,
    tail: str,
    since: str | None,
    timestamps: bool,
    no_task_ids: bool,
    no_trunc: bool,
    raw: bool,
) -> None:
    options = logs_pb2.LogSubscriptionOptions(follow=follow, tail=parse_tail(tail))
    if since is not None:
        options.since.FromNanoseconds(parse_since(since))
    fmt = LogFormat(timestamps=timestamps, task_ids=not no_task_ids, truncate=not no_trunc, raw=raw)
    target: Target = ctx.find_object(Target) or Target()
    channel = open_channel(target)
    try:
        control = Control(channel, target)
        selector, tasks = select(control)
        names = TaskNames(control, name_of, fmt)
        names.load(tasks)
        request = logs_pb2.SubscribeLogsRequest(selector=selector, options=options)
        print_logs(channel, target, request, names, fmt)
    finally:
        channel.close()
