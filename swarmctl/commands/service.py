"""swarmctl service: create, update, ls, inspect, ps, scale, rollback, rm, logs."""

from __future__ import annotations

import shlex
import time
from typing import Any

import click

from shoal.v1 import control_pb2, logs_pb2, objects_pb2, specs_pb2, types_pb2
from swarmctl.commands.common import control_for, list_options, show_list
from swarmctl.commands.node import hostname
from swarmctl.connection import Control
from swarmctl.convergence import wait_converged
from swarmctl.errors import SwarmctlError
from swarmctl.logs import log_options, show_logs
from swarmctl.output import humanize_since, print_json, title
from swarmctl.resolve import NODE, SERVICE, list_all, resolve
from swarmctl.service_flags import apply_options, new_spec, spec_options

DEFAULT_TIMEOUT_S = 120.0


@click.group()
def service() -> None:
    """Manage services."""


def _wait_options(function: Any) -> Any:
    function = click.option(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        show_default=True,
        help="Seconds to wait for convergence.",
    )(function)
    return click.option(
        "--detach", "-d", is_flag=True, help="Return at once, without waiting to converge."
    )(function)


def _converge(control: Control, written: objects_pb2.Service, detach: bool, timeout: float) -> None:
    if not detach:
        wait_converged(control, written.id, timeout, written.meta.version, written.spec)


@service.command(context_settings={"allow_interspersed_args": False})
@click.option("--name", default="", help="Service name.")
@click.option("--image", "image_flag", help="Image (instead of the IMAGE argument).")
@click.option("--mode", type=click.Choice(["replicated", "global"]), default="replicated")
@spec_options
@_wait_options
@click.argument("words", nargs=-1, metavar="IMAGE [CMD]...")
@click.pass_context
def create(
    ctx: click.Context,
    /,
    name: str,
    image_flag: str | None,
    mode: str,
    detach: bool,
    timeout: float,
    words: tuple[str, ...],
    **options: Any,
) -> None:
    """Create a service and wait for its tasks to run."""
    image, command = (image_flag, words) if image_flag else (words[0] if words else "", words[1:])
    spec = new_spec(name, image, command, mode)
    apply_options(spec, options)
    with control_for(ctx) as control:
        created = control.call("CreateService", control_pb2.CreateServiceRequest(spec=spec)).service
        click.echo(created.id)
        _converge(control, created, detach, timeout)


def _update(
    control: Control,
    found: objects_pb2.Service,
    spec: specs_pb2.ServiceSpec,
    rollback: bool = False,
) -> objects_pb2.Service:
    request = control_pb2.UpdateServiceRequest(
        service_id=found.id,
        service_version=found.meta.version,
        spec=spec,
        rollback=(
            control_pb2.UpdateServiceRequest.PREVIOUS
            if rollback
            else control_pb2.UpdateServiceRequest.NONE
        ),
    )
    updated: objects_pb2.Service = control.call("UpdateService", request).service
    return updated


@service.command()
@click.argument("reference", metavar="SERVICE")
@click.option("--image", help="New image.")
@click.option("--args", "new_args", help="New command arguments, one shell-like string.")
@click.option("--force", is_flag=True, help="Redeploy the tasks even with no spec change.")
@click.option("--rollback", is_flag=True, help="Go back to the previous spec.")
@spec_options
@_wait_options
@click.pass_context
def update(
    ctx: click.Context,
    /,
    reference: str,
    image: str | None,
    new_args: str | None,
    force: bool,
    rollback: bool,
    detach: bool,
    timeout: float,
    **options: Any,
) -> None:
    """Change a service's spec (a rolling update) and wait for it."""
    with control_for(ctx) as control:
        found = resolve(control, SERVICE, reference)
        spec = specs_pb2.ServiceSpec()
        spec.CopyFrom(found.spec)
        if image is not None:
            spec.task.container.image = image
        if new_args is not None:
            spec.task.container.args[:] = shlex.split(new_args)
        if force:
            spec.task.force_update += 1
        apply_options(spec, options)
        updated = _update(control, found, spec, rollback)
        click.echo(updated.id)
        _converge(control, updated, detach, timeout)


@service.command()
@click.argument("reference", metavar="SERVICE")
@_wait_options
@click.pass_context
def rollback(ctx: click.Context, reference: str, detach: bool, timeout: float) -> None:
    """Go back to the service's previous spec."""
    with control_for(ctx) as control:
        found = resolve(control, SERVICE, reference)
        if not found.HasField("previous_spec"):
            raise SwarmctlError(f"service {reference} has no previous spec to roll back to")
        rolled_back = _update(control, found, found.spec, rollback=True)
        click.echo(rolled_back.id)
        _converge(control, rolled_back, detach, timeout)


@service.command()
@click.argument("scales", nargs=-1, required=True, metavar="SERVICE=REPLICAS...")
@_wait_options
@click.pass_context
def scale(ctx: click.Context, scales: tuple[str, ...], detach: bool, timeout: float) -> None:
    """Set the number of replicas of one or more services."""
    wanted: list[tuple[str, int]] = []
    for item in scales:
        reference, _, replicas = item.rpartition("=")
        if not reference or not replicas.isdigit():
            raise SwarmctlError(f"invalid scale {item!r}: expected SERVICE=REPLICAS, e.g. web=3")
        wanted.append((reference, int(replicas)))
    with control_for(ctx) as control:
        scaled = []
        for reference, count in wanted:
            found = resolve(control, SERVICE, reference)
            if not found.spec.HasField("replicated_service"):
                raise SwarmctlError(f"service {reference} is not replicated; it cannot be scaled")
            spec = specs_pb2.ServiceSpec()
            spec.CopyFrom(found.spec)
            spec.replicated_service.replicas = count
            scaled.append(_update(control, found, spec))
            click.echo(f"{reference} scaled to {count}")
        for done in scaled:
            _converge(control, done, detach, timeout)


def _tasks(control: Control, service_ids: list[str]) -> list[objects_pb2.Task]:
    filters = control_pb2.ListTasksRequest.Filters(service_ids=service_ids)
    return list(control.call("ListTasks", control_pb2.ListTasksRequest(filters=filters)).tasks)


def replicas_column(found: objects_pb2.Service, tasks: list[objects_pb2.Task]) -> str:
    wanted = [t for t in tasks if t.desired_state == types_pb2.RUNNING]
    running = sum(t.status.state == types_pb2.RUNNING for t in wanted)
    if found.spec.HasField("replicated_service"):
        return f"{running}/{found.spec.replicated_service.replicas}"
    return f"{running}/{len(wanted)}"


def mode_name(found: objects_pb2.Service) -> str:
    return (found.spec.WhichOneof("mode") or "replicated_service").replace("_service", "")


@service.command("ls")
@list_options
@click.pass_context
def ls(ctx: click.Context, quiet: bool, output_format: str) -> None:
    """List services with their running/desired replicas."""
    with control_for(ctx) as control:
        services = sorted(list_all(control, SERVICE), key=lambda s: s.spec.annotations.name)
        tasks = _tasks(control, [s.id for s in services]) if services and not quiet else []
    by_service: dict[str, list[objects_pb2.Task]] = {}
    for task in tasks:
        by_service.setdefault(task.service_id, []).append(task)
    show_list(
        services,
        quiet,
        output_format,
        ["NAME", "MODE", "REPLICAS", "IMAGE", "ID"],
        lambda s: [
            s.spec.annotations.name,
            mode_name(s),
            replicas_column(s, by_service.get(s.id, [])),
            s.spec.task.container.image,
            s.id,
        ],
    )


@service.command()
@click.argument("services", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Show services in full (JSON)."""
    with control_for(ctx) as control:
        print_json([resolve(control, SERVICE, reference) for reference in services])


def task_name(task: objects_pb2.Task, service_name: str) -> str:
    """Docker's NAME column: <service>.<slot>, or <service>.<node id> for global tasks."""
    return f"{service_name}.{task.slot or task.node_id}"


def task_row(
    task: objects_pb2.Task, service_name: str, node_names: dict[str, str], now_s: float
) -> list[str]:
    state = title(types_pb2.TaskState.Name(task.status.state))
    return [
        task.id,
        task_name(task, service_name),
        task.spec.container.image,
        node_names.get(task.node_id, task.node_id),
        title(types_pb2.TaskState.Name(task.desired_state)),
        f"{state} {humanize_since(task.status.timestamp, now_s)}".strip(),
        task.status.err,
    ]


TASK_HEADERS = ["ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"]


def show_tasks(
    control: Control, tasks: list[objects_pb2.Task], quiet: bool, output_format: str
) -> None:
    node_names = {n.id: hostname(n) for n in list_all(control, NODE)} if not quiet else {}
    service_names: dict[str, str] = {}
    for found in list_all(control, SERVICE) if not quiet else []:
        service_names[found.id] = found.spec.annotations.name
    tasks = sorted(
        tasks,
        key=lambda t: (t.service_id, t.slot, t.node_id, -t.meta.created_at.seconds),
    )
    now_s = time.time()
    show_list(
        tasks,
        quiet,
        output_format,
        TASK_HEADERS,
        lambda t: task_row(
            t,
            service_names.get(t.service_id, t.service_annotations.name or t.service_id),
            node_names,
            now_s,
        ),
    )


@service.command()
@click.argument("services", nargs=-1, required=True)
@list_options
@click.pass_context
def ps(ctx: click.Context, services: tuple[str, ...], quiet: bool, output_format: str) -> None:
    """List the tasks of services."""
    with control_for(ctx) as control:
        ids = [resolve(control, SERVICE, reference).id for reference in services]
        show_tasks(control, _tasks(control, ids), quiet, output_format)


@service.command()
@click.argument("services", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Remove services (their tasks are shut down)."""
    with control_for(ctx) as control:
        for reference in services:
            found = resolve(control, SERVICE, reference)
            control.call("RemoveService", control_pb2.RemoveServiceRequest(service_id=found.id))
            click.echo(found.spec.annotations.name)


@service.command()
@click.argument("reference", metavar="SERVICE")
@log_options
@click.pass_context
def logs(ctx: click.Context, /, reference: str, **options: Any) -> None:
    """Show a service's logs, gathered from the nodes that ran its tasks."""

    def select(control: Control) -> tuple[logs_pb2.LogSelector, list[objects_pb2.Task]]:
        found = resolve(control, SERVICE, reference)
        return logs_pb2.LogSelector(service_ids=[found.id]), _tasks(control, [found.id])

    show_logs(ctx, select, task_name, **options)
