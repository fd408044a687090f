"""swarmctl task: ls, inspect, logs."""

from __future__ import annotations

from typing import Any

import click

from shoal.v1 import control_pb2, logs_pb2, objects_pb2
from swarmctl.commands.common import control_for, list_options
from swarmctl.commands.service import show_tasks, task_name
from swarmctl.connection import Control
from swarmctl.logs import log_options, show_logs
from swarmctl.output import print_json
from swarmctl.resolve import SERVICE, TASK, resolve


@click.group()
def task() -> None:
    """Inspect tasks."""


@task.command("ls")
@click.option("--service", "services", multiple=True, help="Only this service's tasks.")
@list_options
@click.pass_context
def ls(ctx: click.Context, services: tuple[str, ...], quiet: bool, output_format: str) -> None:
    """List tasks."""
    with control_for(ctx) as control:
        ids = [resolve(control, SERVICE, reference).id for reference in services]
        filters = control_pb2.ListTasksRequest.Filters(service_ids=ids)
        tasks = list(control.call("ListTasks", control_pb2.ListTasksRequest(filters=filters)).tasks)
        show_tasks(control, tasks, quiet, output_format)


@task.command()
@click.argument("tasks", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, tasks: tuple[str, ...]) -> None:
    """Show tasks in full (JSON)."""
    with control_for(ctx) as control:
        print_json([resolve(control, TASK, reference) for reference in tasks])


@task.command()
@click.argument("reference", metavar="TASK")
@log_options
@click.pass_context
def logs(ctx: click.Context, /, reference: str, **options: Any) -> None:
    """Show a task's logs."""

    def select(control: Control) -> tuple[logs_pb2.LogSelector, list[objects_pb2.Task]]:
        found = resolve(control, TASK, reference)
        return logs_pb2.LogSelector(task_ids=[found.id]), [found]

    show_logs(ctx, select, task_name, **options)
