"""swarmd: the Shoal node daemon (an agent on every node, a manager on manager nodes)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click
from google.protobuf.duration_pb2 import Duration

from common.errors import InvalidValue
from common.units import parse_duration
from manager.ca.errors import CAError
from manager.ports import JOIN_PORT, RAFT_PORT, REMOTE_API_PORT
from node import daemon
from node.daemon import Addresses, SwarmdError

DEFAULT_STATE_DIR = Path("/var/lib/swarmd")


class _DurationType(click.ParamType[Duration]):
    """A Go-style duration on the command line ("5s", "1m30s", "500ms")."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Duration:
        if isinstance(value, Duration):
            return value
        try:
            return parse_duration(str(value))
        except InvalidValue as exc:
            self.fail(str(exc), param, ctx)


DURATION = _DurationType()


async def _until_terminated(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run `coroutine`; SIGTERM or SIGINT cancel it, so every server, the raft node and the
    agent stop cleanly (containers keep running: the next start adopts them)."""
    task = asyncio.ensure_future(coroutine)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        logging.getLogger("swarmd").info("stopped")


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run swarmd's work; errors a user can fix end as one line and exit status 1."""
    try:
        asyncio.run(_until_terminated(coroutine))
    except (SwarmdError, CAError, OSError) as exc:
        click.echo(f"swarmd: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def _addresses(advertise_addr: str, listen_remote_api: str | None) -> Addresses:
    port = REMOTE_API_PORT
    if listen_remote_api:
        host, _, text = listen_remote_api.rpartition(":")
        if not text.isdigit():
            raise click.BadParameter(f"{listen_remote_api!r} is not host:port")
        port = int(text)
        advertise_addr = advertise_addr or host
    if not advertise_addr:
        raise click.BadParameter("--advertise-addr (or --listen-remote-api) is required")
    return Addresses(
        advertise_addr,
        port,
        port + (RAFT_PORT - REMOTE_API_PORT),
        port + (JOIN_PORT - REMOTE_API_PORT),
    )


state_dir_option = click.option(
    "-d",
    "--state-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    envvar="SWARMD_STATE_DIR",
    help="Where the node keeps its state.",
)
address_options = [
    click.option("--advertise-addr", default="", help="The address other nodes reach."),
    click.option(
        "--listen-remote-api",
        default=None,
        metavar="HOST:PORT",
        help=f"Cluster API address (default port {REMOTE_API_PORT}; raft listens on "
        "port+1 and the join API on port+2).",
    ),
    click.option("--hostname", default=None, help="The node's name (default: the host's)."),
]
control_option = click.option(
    "--listen-control-api",
    "control_socket",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="PATH",
    help="The Control API's unix socket on a manager, root only (default: "
    "STATE_DIR/swarmd.sock; swarmctl -s PATH).",
)
metrics_option = click.option(
    "--listen-metrics",
    default=None,
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics.",
)


def _with_address_options(fn: Any) -> Any:
    for option in reversed(address_options):
        fn = option(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="INFO", type=click.Choice(["DEBUG", "INFO", "WARNING"]))
def main(log_level: str) -> None:
    """The Shoal node daemon."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@state_dir_option
@_with_address_options
@click.option(
    "--heartbeat-period",
    type=DURATION,
    default=None,
    metavar="DURATION",
    help="How often agents report (cluster-wide; default 5s; later: swarmctl cluster update).",
)
@click.option(
    "--force-new-cluster",
    is_flag=True,
    help="On a stopped manager whose cluster lost its quorum for good: keep its store and "
    "make it the only manager (the others are removed from raft).",
)
@click.option("--run/--no-run", "then_run", default=True, help="Start serving right away.")
@metrics_option
@control_option
def init(
    state_dir: Path,
    advertise_addr: str,
    listen_remote_api: str | None,
    hostname: str | None,
    heartbeat_period: Duration | None,
    force_new_cluster: bool,
    then_run: bool,
    listen_metrics: str | None,
    control_socket: Path | None,
) -> None:
    """Start a new cluster with this node as its first manager."""
    if force_new_cluster:
        if advertise_addr or listen_remote_api or hostname or heartbeat_period:
            raise click.UsageError(
                "--force-new-cluster keeps the node's addresses and settings: give no others"
            )
        _run(daemon.force_new_cluster(state_dir))
    else:
        addresses = _addresses(advertise_addr, listen_remote_api)
        _run(daemon.init(state_dir, addresses, hostname, heartbeat_period))
    if then_run:
        _run(daemon.run(state_dir, metrics_address=listen_metrics, control_socket=control_socket))


@main.command()
@state_dir_option
@_with_address_options
@click.option("--token", required=True, help="A worker or manager join token.")
@click.option(
    "--manager-api",
    default=None,
    metavar="HOST:PORT",
    help="A manager's cluster API (default: the join address's host, port 4242).",
)
@click.option("--run/--no-run", "then_run", default=True, help="Start serving right away.")
@metrics_option
@control_option
@click.argument("join_address")
def join(
    state_dir: Path,
    advertise_addr: str,
    listen_remote_api: str | None,
    hostname: str | None,
    token: str,
    manager_api: str | None,
    then_run: bool,
    listen_metrics: str | None,
    control_socket: Path | None,
    join_address: str,
) -> None:
    """Join a cluster through a manager's JOIN_ADDRESS (host:port of its join API)."""
    addresses = _addresses(advertise_addr, listen_remote_api)
    _run(daemon.join(state_dir, token, join_address, addresses, hostname, manager_api))
    if then_run:
        _run(
            daemon.run(
                state_dir,
                metrics_address=listen_metrics,
                control_socket=control_socket,
            )
        )


@main.command("run")
@state_dir_option
@metrics_option
@control_option
def run_(state_dir: Path, listen_metrics: str | None, control_socket: Path | None) -> None:
    """Start this node again from its state directory."""
    _run(daemon.run(state_dir, metrics_address=listen_metrics, control_socket=control_socket))
