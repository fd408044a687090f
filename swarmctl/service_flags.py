"""Service flags (Docker's and SwarmKit's) and how each one lands in a ServiceSpec.

`service create` and `service update` share the flags; a flag that was not given leaves the
spec as it is, and a repeatable flag that was given replaces the whole list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from common.units import parse_cpus, parse_duration, parse_size
from shoal.v1 import specs_pb2, types_pb2
from swarmctl.errors import SwarmctlError

Options = dict[str, Any]
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

_RESTART_CONDITIONS = {
    "any": types_pb2.RestartPolicy.ANY,
    "on-failure": types_pb2.RestartPolicy.ON_FAILURE,
    "none": types_pb2.RestartPolicy.NONE,
}
_FAILURE_ACTIONS = {
    "pause": types_pb2.UpdateConfig.PAUSE,
    "continue": types_pb2.UpdateConfig.CONTINUE,
    "rollback": types_pb2.UpdateConfig.ROLLBACK,
}
_ORDERS = {
    "stop-first": types_pb2.UpdateConfig.STOP_FIRST,
    "start-first": types_pb2.UpdateConfig.START_FIRST,
}
_PROTOCOLS = {
    "tcp": types_pb2.PortConfig.TCP,
    "udp": types_pb2.PortConfig.UDP,
    "sctp": types_pb2.PortConfig.SCTP,
}
_PUBLISH_MODES = {"ingress": types_pb2.PortConfig.INGRESS, "host": types_pb2.PortConfig.HOST}
_MOUNT_TYPES = {
    "bind": types_pb2.Mount.BIND,
    "volume": types_pb2.Mount.VOLUME,
    "tmpfs": types_pb2.Mount.TMPFS,
}


def _choice(values: Mapping[str, object]) -> click.Choice[str]:
    return click.Choice(list(values), case_sensitive=False)


def _update_config_options(prefix: str, what: str) -> list[Decorator]:
    return [
        click.option(f"--{prefix}-parallelism", type=int, help=f"Tasks {what} at once (0 = all)."),
        click.option(f"--{prefix}-delay", help=f"Wait between {what} batches, e.g. 10s."),
        click.option(
            f"--{prefix}-failure-action",
            type=_choice(_FAILURE_ACTIONS),
            help=f"What to do when {what} a task fails.",
        ),
        click.option(f"--{prefix}-monitor", help="How long to watch each new task for failure."),
        click.option(
            f"--{prefix}-max-failure-ratio", type=float, help="Failures tolerated (0 to 1)."
        ),
        click.option(f"--{prefix}-order", type=_choice(_ORDERS), help="stop-first or start-first."),
    ]


SPEC_OPTIONS: list[Decorator] = [
    click.option("--replicas", type=int, help="Number of tasks (replicated mode)."),
    click.option("--env", "-e", multiple=True, help="KEY=value for the container (repeatable)."),
    click.option("--label", "-l", multiple=True, help="Service label key=value (repeatable)."),
    click.option("--constraint", multiple=True, help="e.g. node.role==worker (repeatable)."),
    click.option("--placement-pref", multiple=True, help="spread=node.labels.zone (repeatable)."),
    click.option("--replicas-max-per-node", type=int, help="At most this many tasks per node."),
    click.option("--reserve-cpu", help="CPUs reserved per task, e.g. 0.5."),
    click.option("--limit-cpu", help="CPU limit per task."),
    click.option("--reserve-memory", help="Memory reserved per task, e.g. 64m."),
    click.option("--limit-memory", help="Memory limit per task."),
    click.option("--restart-condition", type=_choice(_RESTART_CONDITIONS)),
    click.option("--restart-delay", help="Wait before a restart, e.g. 5s."),
    click.option("--restart-max-attempts", type=int, help="Restarts before giving up."),
    click.option("--restart-window", help="Window in which restarts are counted."),
    *_update_config_options("update", "updating"),
    *_update_config_options("rollback", "rolling back"),
    click.option(
        "--publish",
        "-p",
        multiple=True,
        help="[mode=host,]published:target[/proto] or published=,target=,protocol=,mode=.",
    ),
    click.option(
        "--mount", multiple=True, help="type=bind|volume|tmpfs,source=,target=[,readonly]."
    ),
    click.option("--network", multiple=True, help="Attach to a network (name or id)."),
    click.option("--hostname", help="Container hostname."),
    click.option("--workdir", "-w", help="Working directory in the container."),
    click.option("--user", "-u", help="user, uid, user:group or uid:gid."),
    click.option("--stop-grace-period", help="Wait before SIGKILL, e.g. 10s."),
]


def spec_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Adds every spec flag to a click command."""
    for decorate in reversed(SPEC_OPTIONS):
        function = decorate(function)
    return function


def parse_key_value(text: str, what: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    if not key.strip():
        raise SwarmctlError(f"invalid {what} {text!r}: expected key=value")
    return key.strip(), value


def _non_negative(value: int, flag: str) -> int:
    if value < 0:
        raise SwarmctlError(f"invalid {flag} {value}: must not be negative")
    return value


def parse_publish(text: str) -> types_pb2.PortConfig:
    """One --publish value in Docker's long (key=value) or short (8080:80/udp) form."""
    port = types_pb2.PortConfig()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            _parse_short_publish(part, port, text)
        elif key == "mode" and value.lower() in _PUBLISH_MODES:
            port.publish_mode = _PUBLISH_MODES[value.lower()]
        elif key in ("published", "target"):
            number = _port_number(value, text)
            if key == "published":
                port.published_port = number
            else:
                port.target_port = number
        elif key == "protocol" and value.lower() in _PROTOCOLS:
            port.protocol = _PROTOCOLS[value.lower()]
        elif key == "name":
            port.name = value
        else:
            raise SwarmctlError(f"invalid --publish {text!r}: cannot use {part!r}")
    if not port.target_port:
        raise SwarmctlError(f"invalid --publish {text!r}: no target port")
    return port


def _parse_short_publish(part: str, port: types_pb2.PortConfig, text: str) -> None:
    ports, _, protocol = part.partition("/")
    if protocol:
        if protocol.lower() not in _PROTOCOLS:
            raise SwarmctlError(f"invalid --publish {text!r}: unknown protocol {protocol!r}")
        port.protocol = _PROTOCOLS[protocol.lower()]
    published, sep, target = ports.rpartition(":")
    port.target_port = _port_number(target, text)
    if sep:
        port.published_port = _port_number(published, text)


def _port_number(value: str, text: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SwarmctlError(f"invalid --publish {text!r}: {value!r} is not a port (1-65535)")
    return int(value)


def parse_mount(text: str) -> types_pb2.Mount:
    """One --mount value: type=bind|volume|tmpfs,source=,target=[,readonly][,tmpfs-size=]."""
    mount = types_pb2.Mount(type=types_pb2.Mount.VOLUME)
    for part in (p.strip() for p in text.split(",")):
        key, sep, value = part.partition("=")
        key = key.lower()
        if key == "type" and value.lower() in _MOUNT_TYPES:
            mount.type = _MOUNT_TYPES[value.lower()]
        elif key in ("source", "src"):
            mount.source = value
        elif key in ("target", "destination", "dst"):
            mount.target = value
        elif key in ("readonly", "ro") and (not sep or value.lower() in ("true", "1")):
            mount.readonly = True
        elif key in ("readonly", "ro") and value.lower() in ("false", "0"):
            mount.readonly = False
        elif key == "tmpfs-size":
            mount.tmpfs_options.size_bytes = parse_size(value)
        elif key == "tmpfs-mode" and _is_octal(value):
            mount.tmpfs_options.mode = int(value, 8)
        else:
            raise SwarmctlError(f"invalid --mount {text!r}: cannot use {part!r}")
    if not mount.target:
        raise SwarmctlError(f"invalid --mount {text!r}: no target")
    if mount.type == types_pb2.Mount.BIND and not mount.source:
        raise SwarmctlError(f"invalid --mount {text!r}: a bind mount needs a source")
    if mount.type == types_pb2.Mount.TMPFS and mount.source:
        raise SwarmctlError(f"invalid --mount {text!r}: a tmpfs mount takes no source")
    return mount


def _is_octal(value: str) -> bool:
    return bool(value) and all(c in "01234567" for c in value)


def parse_placement_pref(text: str) -> types_pb2.PlacementPreference:
    strategy, _, descriptor = text.partition("=")
    if strategy != "spread" or not descriptor:
        raise SwarmctlError(f"invalid --placement-pref {text!r}: expected spread=<label>")
    return types_pb2.PlacementPreference(spread=types_pb2.SpreadOver(spread_descriptor=descriptor))


def _apply_update_config(config: types_pb2.UpdateConfig, prefix: str, options: Options) -> None:
    key = prefix.replace("-", "_")
    if (value := options.get(f"{key}_parallelism")) is not None:
        config.parallelism = _non_negative(value, f"--{prefix}-parallelism")
    if (value := options.get(f"{key}_delay")) is not None:
        config.delay.CopyFrom(parse_duration(value))
    if (value := options.get(f"{key}_failure_action")) is not None:
        config.failure_action = _FAILURE_ACTIONS[value.lower()]
    if (value := options.get(f"{key}_monitor")) is not None:
        config.monitor.CopyFrom(parse_duration(value))
    if (value := options.get(f"{key}_max_failure_ratio")) is not None:
        if not 0.0 <= value <= 1.0:
            raise SwarmctlError(f"invalid --{prefix}-max-failure-ratio {value}: must be 0 to 1")
        config.max_failure_ratio = value
    if (value := options.get(f"{key}_order")) is not None:
        config.order = _ORDERS[value.lower()]


def _given(options: Options, name: str) -> Sequence[str] | None:
    """A repeatable flag's values, or None when it was not given at all."""
    values: Sequence[str] = options.get(name) or ()
    return values if values else None


def apply_options(spec: specs_pb2.ServiceSpec, options: Options) -> None:
    """Writes every given flag into `spec` (a fresh one for create, the current for update)."""
    task = spec.task
    container = task.container
    if (replicas := options.get("replicas")) is not None:
        if spec.HasField("global_service"):
            raise SwarmctlError("--replicas cannot be used with a global service")
        spec.replicated_service.replicas = _non_negative(replicas, "--replicas")
    if (env := _given(options, "env")) is not None:
        for entry in env:
            if not entry or entry.startswith("="):
                raise SwarmctlError(f"invalid --env {entry!r}: expected KEY=value")
        container.env[:] = list(env)
    if (labels := _given(options, "label")) is not None:
        spec.annotations.labels.clear()
        spec.annotations.labels.update(parse_key_value(label, "--label") for label in labels)
    if (constraints := _given(options, "constraint")) is not None:
        task.placement.constraints[:] = list(constraints)
    if (prefs := _given(options, "placement_pref")) is not None:
        del task.placement.preferences[:]
        task.placement.preferences.extend(parse_placement_pref(p) for p in prefs)
    if (value := options.get("replicas_max_per_node")) is not None:
        task.placement.max_replicas = _non_negative(value, "--replicas-max-per-node")
    _apply_resources(task.resources, options)
    _apply_restart(task.restart, options)
    _apply_update_config(spec.update, "update", options)
    _apply_update_config(spec.rollback, "rollback", options)
    if (published := _given(options, "publish")) is not None:
        del spec.endpoint.ports[:]
        spec.endpoint.ports.extend(parse_publish(p) for p in published)
    if (mounts := _given(options, "mount")) is not None:
        del container.mounts[:]
        container.mounts.extend(parse_mount(m) for m in mounts)
    if (networks := _given(options, "network")) is not None:
        del task.networks[:]
        task.networks.extend(specs_pb2.NetworkAttachmentConfig(target=n) for n in networks)
    for flag, field in (("hostname", "hostname"), ("workdir", "dir"), ("user", "user")):
        if (value := options.get(flag)) is not None:
            setattr(container, field, value)
    if (value := options.get("stop_grace_period")) is not None:
        container.stop_grace_period.CopyFrom(parse_duration(value))


def _apply_resources(resources: types_pb2.ResourceRequirements, options: Options) -> None:
    # 0 takes a reservation or limit away (`service update --limit-cpu 0`), as Docker's does.
    if (value := options.get("reserve_cpu")) is not None:
        resources.reservations.nano_cpus = parse_cpus(value, allow_zero=True)
    if (value := options.get("limit_cpu")) is not None:
        resources.limits.nano_cpus = parse_cpus(value, allow_zero=True)
    if (value := options.get("reserve_memory")) is not None:
        resources.reservations.memory_bytes = parse_size(value)
    if (value := options.get("limit_memory")) is not None:
        resources.limits.memory_bytes = parse_size(value)


def _apply_restart(restart: types_pb2.RestartPolicy, options: Options) -> None:
    if (value := options.get("restart_condition")) is not None:
        restart.condition = _RESTART_CONDITIONS[value.lower()]
    if (value := options.get("restart_delay")) is not None:
        restart.delay.CopyFrom(parse_duration(value))
    if (value := options.get("restart_max_attempts")) is not None:
        restart.max_attempts = _non_negative(value, "--restart-max-attempts")
    if (value := options.get("restart_window")) is not None:
        restart.window.CopyFrom(parse_duration(value))


def new_spec(name: str, image: str, command: Sequence[str], mode: str) -> specs_pb2.ServiceSpec:
    """The spec `service create` starts from, before the flags are applied."""
    if not image:
        raise SwarmctlError("an image is required: service create [OPTIONS] IMAGE [CMD...]")
    spec = specs_pb2.ServiceSpec()
    spec.annotations.name = name
    spec.task.container.image = image
    spec.task.container.args[:] = list(command)
    if mode == "global":
        spec.global_service.SetInParent()
    else:
        spec.replicated_service.replicas = 1
    return spec
