"""The container commands of `shoal`: run, ps, logs, exec, start, stop, kill, rm, wait,
inspect, stats, and the `cleanup` the shims call when a container ends."""

from __future__ import annotations

import contextlib
import json
import os
import signal as signals
import sys
from collections.abc import Iterable
from typing import Any

import click

from common.tables import print_table
from common.timeparse import age, format_rfc3339, parse_since
from common.units import human_size, parse_cpus, parse_size
from runtime.config import EngineConfig
from runtime.container import logs as container_logs
from runtime.container.cgroups import Limits
from runtime.container.engine import Engine
from runtime.container.spec import NETWORK_MODES, ContainerSpec, Mount
from runtime.engine_factory import make_engine
from runtime.errors import RuntimeEngineError


def _engine(ctx: click.Context) -> Engine:
    config: EngineConfig = ctx.obj
    return make_engine(config)


def _image(ctx: click.Context, ref: str, quiet: bool) -> Any:
    """The local image `ref`, pulled first when it is not here (like `docker run`)."""
    from runtime.image.errors import ImageNotFound
    from runtime.image.store import ImageStore

    try:
        return ImageStore(ctx.obj).get(ref)  # the fast path: no registry code loaded
    except ImageNotFound:
        from runtime.commands.images import image_for_run

        return image_for_run(ctx.obj, ref, quiet=quiet)


def _parse_signal(value: str) -> int:
    name = value.upper()
    if name.isdigit():
        return int(name)
    try:
        return int(signals.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except KeyError:
        raise RuntimeEngineError(f"unknown signal {value!r}") from None


def _volume(value: str) -> Mount:
    parts = value.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise RuntimeEngineError(f"invalid volume {value!r}: expected SOURCE:TARGET[:ro]")
    source, target = parts[0], parts[1]
    readonly = len(parts) == 3 and parts[2] == "ro"
    return Mount("bind" if source.startswith("/") else "volume", target, source, readonly)


def _tmpfs(value: str) -> Mount:
    target, _, options = value.partition(":")
    size = 0
    for option in filter(None, options.split(",")):
        key, _, setting = option.partition("=")
        if key != "size":
            raise RuntimeEngineError(f"unsupported tmpfs option {option!r} (only size=)")
        size = parse_size(setting)
    return Mount("tmpfs", target, tmpfs_size=size)


def _print_logs(records: Iterable[container_logs.LogRecord], timestamps: bool) -> None:
    for record in records:
        out = sys.stdout if record.stream == "stdout" else sys.stderr
        out.write(f"{record.time} {record.data}" if timestamps else record.data)
        out.flush()


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run in the background; print the id.")
@click.option("--rm", "auto_remove", is_flag=True, help="Remove the container when it ends.")
@click.option("--name", default="", help="A name for the container.")
@click.option("-e", "--env", multiple=True, help="NAME=value (repeatable).")
@click.option("-p", "--publish", multiple=True, help="[IP:]HOST_PORT:CONTAINER_PORT[/proto].")
@click.option("-v", "--volume", multiple=True, help="/host/path:/path[:ro] or NAME:/path.")
@click.option("--tmpfs", multiple=True, help="/path[:size=64m]")
@click.option("-m", "--memory", default=None, help="Memory limit, e.g. 64m.")
@click.option("--cpus", default=None, help="CPU limit, e.g. 0.5.")
@click.option("--pids-limit", type=int, default=0, help="Maximum number of processes.")
@click.option(
    "--network",
    default="bridge",
    help="bridge, host, none, or an attachable overlay network of the node's swarm.",
)
@click.option("-w", "--workdir", default="")
@click.option("-u", "--user", default="")
@click.option("-h", "--hostname", default="")
@click.option("--entrypoint", default=None, help="Override the image's entrypoint.")
@click.option("-l", "--label", multiple=True, help="KEY=value (repeatable).")
@click.option("--stop-signal", default="SIGTERM")
@click.option("--stop-timeout", type=float, default=10.0)
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open (needs -t for now).")
@click.option("-t", "--tty", is_flag=True, help="Give the container a terminal.")
@click.option("-q", "--quiet", is_flag=True, help="No pull progress.")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(
    ctx: click.Context,
    detach: bool,
    auto_remove: bool,
    name: str,
    env: tuple[str, ...],
    publish: tuple[str, ...],
    volume: tuple[str, ...],
    tmpfs: tuple[str, ...],
    memory: str | None,
    cpus: str | None,
    pids_limit: int,
    network: str,
    workdir: str,
    user: str,
    hostname: str,
    entrypoint: str | None,
    label: tuple[str, ...],
    stop_signal: str,
    stop_timeout: float,
    interactive: bool,
    tty: bool,
    quiet: bool,
    image: str,
    command: tuple[str, ...],
) -> None:
    """Create and start a container from IMAGE."""
    if interactive and not tty:
        raise RuntimeEngineError("-i without -t is not supported yet: use -it or -d")
    _signal = _parse_signal(stop_signal)
    labels = dict(item.partition("=")[::2] for item in label)
    spec = ContainerSpec(
        image=image,
        name=name,
        command=command,
        entrypoint=None if entrypoint is None else tuple(entrypoint.split()),
        env=env,
        workdir=workdir,
        user=user,
        hostname=hostname,
        labels=labels,
        mounts=tuple(_volume(v) for v in volume) + tuple(_tmpfs(t) for t in tmpfs),
        limits=Limits(
            memory_bytes=parse_size(memory) if memory else 0,
            nano_cpus=parse_cpus(cpus) if cpus else 0,
            pids=pids_limit,
        ),
        # An overlay network of the swarm, with the bridge as the way out (as Docker's
        # docker_gwbridge).
        network=network if network in NETWORK_MODES else "bridge",
        cluster_networks=() if network in NETWORK_MODES else (network,),
        ports=publish,
        tty=tty,
        stdin_open=interactive,
        stop_signal=signals.Signals(_signal).name,
        stop_timeout=stop_timeout,
        auto_remove=auto_remove,
    )
    spec.validate()
    if publish:
        from runtime.network.ports import check_no_conflicts, parse_port

        check_no_conflicts(tuple(parse_port(p) for p in publish))
    engine = _engine(ctx)
    container_id = engine.create(spec, _image(ctx, image, quiet or detach))
    try:
        conn = engine.start(container_id, attach=interactive, attended=not detach)
    except RuntimeEngineError:
        if auto_remove:
            engine.remove(container_id, force=True)
        raise
    if detach:
        click.echo(container_id)
        return
    if conn is not None:
        from runtime.commands.attach import attach

        code = attach(engine, container_id, conn)
        _after_foreground(engine, container_id, auto_remove)
        sys.exit(code)
    _print_logs(
        container_logs.read(
            engine.store.find(container_id).log_file,
            follow=True,
            still_running=engine.watch(container_id),
        ),
        timestamps=False,
    )
    record = engine.wait(container_id)
    _after_foreground(engine, container_id, auto_remove)
    sys.exit(record["exit_code"])


def _after_foreground(engine: Engine, container_id: str, auto_remove: bool) -> None:
    """We attended the container, so its shim left the clean-up to us."""
    with contextlib.suppress(RuntimeEngineError):
        if auto_remove:
            engine.remove(container_id, force=True)
        else:
            engine.cleanup(container_id)


@click.command("ps")
@click.option("-a", "--all", "show_all", is_flag=True, help="Also stopped containers.")
@click.option("-q", "--quiet", is_flag=True, help="Only ids.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def ps(ctx: click.Context, show_all: bool, quiet: bool, fmt: str) -> None:
    """List containers."""
    infos = _engine(ctx).list(all=show_all)
    if quiet:
        click.echo("\n".join(i["Id"][:12] for i in infos))
        return
    if fmt == "json":
        click.echo(json.dumps(infos, indent=2))
        return
    rows = []
    for i in infos:
        state = i["State"]
        if state["Running"]:
            status = f"Up {age(state['StartedAt'])}"
        elif state["Status"] == "exited":
            status = f"Exited ({state['ExitCode']}) {age(state['FinishedAt'])} ago"
        else:
            status = "Created"
        command = " ".join(i["Config"]["Cmd"])
        rows.append(
            [
                i["Id"][:12],
                i["Config"]["Image"],
                f'"{command[:30]}"',
                f"{age(i['Created'])} ago",
                status,
                ", ".join(i["HostConfig"]["PortBindings"]),
                i["Name"],
            ]
        )
    print_table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], rows)


@click.command()
@click.option("-f", "--follow", is_flag=True)
@click.option("--tail", default="all", help="Lines from the end, or 'all'.")
@click.option("--since", default=None, help="Relative (10m) or absolute (RFC 3339) start.")
@click.option("-t", "--timestamps", is_flag=True)
@click.argument("container")
@click.pass_context
def logs(
    ctx: click.Context, follow: bool, tail: str, since: str | None, timestamps: bool, container: str
) -> None:
    """Show a container's output."""
    engine = _engine(ctx)
    d = engine.store.find(container)
    if tail != "all" and not tail.isdigit():
        raise RuntimeEngineError(f"invalid --tail {tail!r}: a number or 'all'")
    records = container_logs.read(
        d.log_file,
        tail=None if tail == "all" else int(tail),
        since=format_rfc3339(parse_since(since)) if since else None,
        follow=follow,
        still_running=engine.watch(d.id),
    )
    _print_logs(records, timestamps)


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True)
@click.option("-t", "--tty", is_flag=True)
@click.option("-e", "--env", multiple=True)
@click.option("-u", "--user", default=None)
@click.option("-w", "--workdir", default=None)
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(
    ctx: click.Context,
    interactive: bool,
    tty: bool,
    env: tuple[str, ...],
    user: str | None,
    workdir: str | None,
    container: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND in a running container."""
    engine = _engine(ctx)
    if tty:
        from runtime.commands.attach import exec_with_tty

        sys.exit(exec_with_tty(engine, container, command, env, user, workdir, interactive))
    stdin = 0 if interactive else os.open("/dev/null", os.O_RDONLY)
    pid, _ = engine.exec(container, command, (stdin, 1, 2), env, user, workdir)
    from runtime.container import exec as container_exec

    sys.exit(container_exec.wait(pid))


def _each(names: tuple[str, ...], action: Any) -> None:
    """Apply `action` to every container; report failures one per line, exit 1 if any."""
    failed = False
    for name in names:
        try:
            action(name)
            click.echo(name)
        except RuntimeEngineError as exc:
            click.echo(f"shoal: error: {exc}", err=True)
            failed = True
    if failed:
        sys.exit(1)


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def start(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Start stopped containers."""
    _each(containers, _engine(ctx).start)


@click.command()
@click.option(
    "-t",
    "--time",
    "timeout",
    type=float,
    default=None,
    help="Seconds to wait before SIGKILL (default: the container's stop timeout).",
)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def stop(ctx: click.Context, timeout: float | None, containers: tuple[str, ...]) -> None:
    """Stop containers: stop signal, grace period, then SIGKILL."""
    engine = _engine(ctx)
    _each(containers, lambda c: engine.stop(c, timeout))


@click.command()
@click.option("-s", "--signal", "sig", default="SIGKILL")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def kill(ctx: click.Context, sig: str, containers: tuple[str, ...]) -> None:
    """Send a signal to containers."""
    engine, number = _engine(ctx), _parse_signal(sig)
    _each(containers, lambda c: engine.kill(c, number))


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill running containers first.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, force: bool, containers: tuple[str, ...]) -> None:
    """Remove containers."""
    engine = _engine(ctx)
    _each(containers, lambda c: engine.remove(c, force=force))


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def wait(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Wait for containers to end; print their exit codes."""
    engine = _engine(ctx)
    for name in containers:
        click.echo(engine.wait(name)["exit_code"])


@click.command()
@click.option("--no-stream", is_flag=True, help="Print once instead of refreshing.")
@click.argument("containers", nargs=-1)
@click.pass_context
def stats(ctx: click.Context, no_stream: bool, containers: tuple[str, ...]) -> None:
    """Show containers' CPU, memory and process counts (from their cgroups)."""
    import time

    engine = _engine(ctx)
    names = containers or tuple(i["Id"] for i in engine.list())
    previous: dict[str, tuple[float, int]] = {}
    for _ in range(1 if no_stream else 10**9):
        rows = []
        for name in names:
            info = engine.inspect(name)
            usage = engine.usage(name) if info["State"]["Running"] else None
            if usage is None:
                continue
            now = time.monotonic()
            last_t, last_cpu = previous.get(info["Id"], (now, usage["cpu_ns"]))
            previous[info["Id"]] = (now, usage["cpu_ns"])
            cpu = 100.0 * (usage["cpu_ns"] - last_cpu) / 1e9 / (now - last_t) if now > last_t else 0
            limit = usage["memory_limit_bytes"]
            rows.append(
                [
                    info["Id"][:12],
                    info["Name"],
                    f"{cpu:.2f}%",
                    f"{human_size(usage['memory_bytes'])} / "
                    f"{human_size(limit) if limit else 'unlimited'}",
                    str(usage["pids"]),
                ]
            )
        print_table(["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"], rows)
        if no_stream:
            return
        time.sleep(1)


@click.command(hidden=True)
@click.argument("container")
@click.pass_context
def cleanup(ctx: click.Context, container: str) -> None:
    """Release an ended container's network and cgroup (run by its shim)."""
    _engine(ctx).cleanup(container)


@click.command()
@click.argument("container")
@click.pass_context
def diff(ctx: click.Context, container: str) -> None:
    """Show a container's filesystem changes: A added, C changed, D deleted."""
    from runtime.image.changes import diff as changes

    upper, lowers = _engine(ctx).layers(container)
    for change in changes(upper, lowers):
        click.echo(str(change))


@click.command()
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("-a", "--author", default="")
@click.option(
    "-c",
    "--change",
    "config_changes",
    multiple=True,
    help="A Dockerfile-like instruction: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, "
    "EXPOSE (as JSON for CMD/ENTRYPOINT, e.g. -c 'CMD [\"sh\"]').",
)
@click.option("--pause/--no-pause", default=True, help="Freeze the container while copying.")
@click.argument("container")
@click.argument("repository")
@click.pass_context
def commit(
    ctx: click.Context,
    message: str,
    author: str,
    config_changes: tuple[str, ...],
    pause: bool,
    container: str,
    repository: str,
) -> None:
    """Make an image from a container's changes."""
    from runtime.image.store import ImageStore

    engine = _engine(ctx)
    store = ImageStore(ctx.obj)
    base = store.get(engine.inspect(container)["Image"])
    upper, _lowers = engine.layers(container)
    freeze = engine.frozen(container) if pause else contextlib.nullcontext()
    with freeze:
        image = store.commit(
            upper, base, repository, _parse_changes(config_changes), comment=message, author=author
        )
    click.echo(image.id)


def _parse_changes(items: tuple[str, ...]) -> dict[str, Any]:
    """`-c 'ENV A=1'` style instructions -> the image store's config changes."""
    out: dict[str, Any] = {}
    for item in items:
        keyword, _, value = item.strip().partition(" ")
        key = keyword.upper()
        value = value.strip()
        if key in ("CMD", "ENTRYPOINT"):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = ["/bin/sh", "-c", value]
            out[key.capitalize() if key == "CMD" else "Entrypoint"] = parsed
        elif key == "ENV":
            out.setdefault("Env", []).append(value if "=" in value else value.replace(" ", "=", 1))
        elif key == "LABEL":
            k, _, v = value.partition("=")
            out.setdefault("Labels", {})[k] = v.strip('"')
        elif key == "WORKDIR":
            out["WorkingDir"] = value
        elif key == "USER":
            out["User"] = value
        elif key == "EXPOSE":
            port = value if "/" in value else f"{value}/tcp"
            out.setdefault("ExposedPorts", {})[port] = {}
        else:
            raise RuntimeEngineError(f"unsupported --change instruction {keyword!r}")
    return out


def find_container(config: EngineConfig, name: str) -> dict[str, Any] | None:
    """`shoal inspect` finder: the container named `name`, or None."""
    from runtime.errors import NotFound

    try:
        return make_engine(config).inspect(name)
    except NotFound:
        return None


COMMANDS = (run, ps, logs, exec_, start, stop, kill, rm, wait, stats, diff, commit, cleanup)
