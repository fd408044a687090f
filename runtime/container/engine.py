"""The container engine: create, start, wait, stop, kill, remove, inspect and list.

Daemonless: every operation reads and writes the container's directory under the engine
root, so any process (the `shoal` CLI, later the agent) can pick up a container another one
started. Start latency matters: all planning happens before the fork, the child only makes
system calls (see init and shim).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from common import libc
from runtime import metrics
from runtime.config import EngineConfig
from runtime.container import init, names, security, shim
from runtime.container.cgroups import ContainerCgroup, Limits
from runtime.container.spec import (
    ContainerSpec,
    OverlayAttachment,
    ProcessPlan,
    interface_name,
    resolve_process,
)
from runtime.container.store import (
    ContainerDir,
    ContainerStore,
    State,
    alive,
    proc_start_time,
)
from runtime.errors import ContainerError, RuntimeEngineError
from runtime.files import write_json

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import socket

REEXEC_SHIM_AFTER = 0.2  # seconds a container must live before its shim slims down
INIT_LAYER_DIRS = ("proc", "sys", "dev", "etc")
INIT_LAYER_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")
# Containers on overlay networks ask the embedded resolver (runtime.network.dns).
EMBEDDED_RESOLV_CONF = "nameserver 127.0.0.11\noptions ndots:0\n"


class Image(Protocol):
    """What the engine needs of an image (the image store's Image satisfies it)."""

    @property
    def id(self) -> str: ...

    @property
    def config(self) -> dict[str, Any]: ...

    def lower_dirs(self) -> list[Path]: ...


class Network(Protocol):
    """What the engine needs of its networks (runtime.engine_factory's satisfies it): the
    node's bridge, and the overlay networks a container's spec names."""

    def attach(
        self, container_id: str, netns_path: str, ports: Sequence[str], ifname: str
    ) -> dict[str, Any]: ...

    def detach(self, container_id: str) -> None: ...

    def attach_overlay(
        self, container_id: str, netns_path: str, overlay: OverlayAttachment, ifname: str
    ) -> dict[str, Any]: ...

    def detach_overlay(self, container_id: str, overlay: OverlayAttachment) -> None: ...

    def set_overlay_peers(
        self, overlay: OverlayAttachment, peers: Sequence[tuple[str, str]]
    ) -> None: ...

    def serve_dns(
        self, container_id: str, netns_path: str, overlays: Sequence[OverlayAttachment]
    ) -> None:
        """Answer the container's DNS queries at 127.0.0.11 (names of its overlays)."""

    def stop_dns(self, container_id: str) -> None: ...

    def join_cluster(
        self, container_id: str, container_name: str, networks: Sequence[str]
    ) -> list[OverlayAttachment]:
        """Addresses on the cluster's attachable overlay networks, for one run."""

    def leave_cluster(self, container_id: str) -> None:
        """Give the run's cluster addresses back."""

    def prepare(self) -> None:
        """Get ready to attach (load code, ...): called while the container's processes
        set up, so that the `attach` after them takes less time."""


def _remove_tree(path: Path, attempts: int = 5) -> None:
    """rmtree that outlasts a late writer (a clean-up command finishing its last write)."""
    for attempt in range(attempts):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY or attempt == attempts - 1:
                raise
            time.sleep(0.01)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _host_resolv_conf() -> str:
    """The host's resolver settings minus loopback servers, unreachable from a container."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except FileNotFoundError:
        return ""
    kept = [
        line
        for line in lines
        if not (
            line.startswith("nameserver")
            and line.split()[1:2]
            and (line.split()[1].startswith("127.") or line.split()[1] == "::1")
        )
    ]
    return "\n".join(kept) + "\n"


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        network: Network | None = None,
        cleanup_on_exit: bool = True,
    ) -> None:
        """`cleanup_on_exit`: the shim runs `shoal cleanup` when the container ends (the
        daemonless CLI needs it); a long-lived caller may do the clean-up in `wait`."""
        self.config = config
        self.store = ContainerStore(config.containers_dir)
        self._network = network
        self.cleanup_on_exit = cleanup_on_exit
        self._seccomp: tuple[libc.SockFprog, Any] | None = None
        self._last_cap = security.last_cap()

    # -- lifecycle -----------------------------------------------------------------------

    def create(self, spec: ContainerSpec, image: Image) -> str:
        spec.validate()
        container_id = os.urandom(32).hex()
        hostname = spec.hostname or container_id[:12]
        process = resolve_process(spec, image.config, hostname)
        with self.store.creating():
            name = spec.name or names.generate(
                {d.config().get("name", "") for d in self.store.all()}
            )
            if spec.name and any(d.config().get("name") == spec.name for d in self.store.all()):
                raise ContainerError(f"the container name {spec.name!r} is already in use")
            d = ContainerDir(self.config.containers_dir / container_id)
            d.path.mkdir(mode=0o710)
            for sub in ("upper", "work", "rootfs"):
                (d.path / sub).mkdir(mode=0o755)
            self._make_init_layer(d.path / "init")
            (d.path / "hostname").write_text(hostname + "\n")
            (d.path / "hosts").write_text(self._hosts(hostname, ""))
            (d.path / "resolv.conf").write_text(
                EMBEDDED_RESOLV_CONF
                if spec.overlays or spec.cluster_networks
                else _host_resolv_conf()
            )
            cgroup = ContainerCgroup.plan(container_id, self.config.cgroup_parent)
            write_json(
                d.config_file,
                {
                    "id": container_id,
                    "name": name,
                    "created": now_rfc3339(),
                    "hostname": hostname,
                    "image": spec.image,
                    "image_id": image.id,
                    "lower_dirs": [str(p) for p in image.lower_dirs()],
                    "spec": spec.to_json(),
                    "process": process._asdict(),
                    "cgroup": cgroup.to_json(),
                },
            )
            d.save_state(State())
        return container_id

    @staticmethod
    def _make_init_layer(path: Path) -> None:
        """Mount points every container needs, kept out of the container's own changes."""
        for sub in INIT_LAYER_DIRS:
            (path / sub).mkdir(parents=True, mode=0o755)
        for name in INIT_LAYER_FILES:
            (path / name).touch(mode=0o644)

    @staticmethod
    def _hosts(hostname: str, ip: str) -> str:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines.append(f"{ip or '127.0.1.1'}\t{hostname}")
        return "\n".join(lines) + "\n"

    def _seccomp_prog(self) -> libc.SockFprog:
        if self._seccomp is None:
            bpf = security.default_profile_bpf(self.config.root / "cache")
            self._seccomp = libc.make_fprog(bpf)
        return self._seccomp[0]

    def _plan(
        self, d: ContainerDir, conf: dict[str, Any], cgroup: ContainerCgroup
    ) -> init.InitPlan:
        spec = ContainerSpec.from_json(conf["spec"])
        raw = conf["process"]
        process = ProcessPlan(tuple(raw["argv"]), tuple(raw["env"]), raw["cwd"], raw["user"])
        lowers = ":".join([str(d.path / "init"), *conf["lower_dirs"]])
        overlay = f"lowerdir={lowers},upperdir={d.path / 'upper'},workdir={d.path / 'work'}"
        binds = [
            init.BindSpec(str(d.path / name), f"/etc/{name}")
            for name in ("hosts", "hostname", "resolv.conf")
        ]
        for mount in spec.mounts:
            if mount.type == "tmpfs":
                binds.append(init.BindSpec("tmpfs", mount.target, False, mount.tmpfs_size))
                continue
            source = mount.source
            if mount.type == "volume":
                volume = self.config.root / "volumes" / mount.source / "_data"
                volume.mkdir(parents=True, exist_ok=True)
                source = str(volume)
            elif not os.path.exists(source):
                raise ContainerError(f"bind mount source does not exist: {source}")
            binds.append(init.BindSpec(source, mount.target, mount.readonly))
        return init.InitPlan(
            rootfs=str(d.path / "rootfs"),
            overlay_options=overlay,
            hostname=conf["hostname"],
            new_netns=spec.network != "host",
            binds=tuple(binds),
            cgroup_procs=tuple(cgroup.procs_files),
            argv=process.argv,
            env=process.env,
            cwd=process.cwd,
            user=process.user,
            last_cap=self._last_cap,
            tty=spec.tty,
        )

    def start(
        self, name_or_id: str, attach: bool = False, attended: bool = False
    ) -> socket.socket | None:
        """Start the container. With `attach` (tty containers), also return a connection to
        its terminal, made before the process runs so no output is missed. `attended`: this
        process waits for the container and cleans up after it, so its shim need not run the
        clean-up command unless this process has gone by then."""
        d = self.store.find(name_or_id)
        attached: socket.socket | None = None
        began = time.perf_counter()
        with d.locked():
            if self._status(d) == "running":
                raise ContainerError(f"container {d.config()['name']} is already running")
            conf = d.config()
            spec = ContainerSpec.from_json(conf["spec"])
            cgroup = ContainerCgroup.from_json(conf["cgroup"])
            self._cleanup(d, conf)  # a restart begins from a clean slate
            cgroup.create(spec.limits)
            plan = self._plan(d, conf, cgroup)
            d.exit_file.unlink(missing_ok=True)
            attended_file = d.path / "attended"
            if attended:
                attended_file.write_text(f"{os.getpid()} {proc_start_time(os.getpid())}")
            else:
                attended_file.unlink(missing_ok=True)
            state = State()

            if attach and not spec.tty:
                raise ContainerError("only a container with a terminal (-t) can be attached")
            overlays = list(spec.overlays)
            if spec.cluster_networks:
                if self._network is None:
                    raise ContainerError("networks are not available in this engine")
                joined = self._network.join_cluster(d.id, conf["name"], spec.cluster_networks)
                state.cluster_overlays = [asdict(o) for o in joined]
                d.save_state(state)  # on record first: the clean-up gives them back
                overlays = [*joined, *overlays]

            def before_exec(pid: int) -> None:
                nonlocal attached
                if attach:
                    attached = shim.attach_connect(str(d.path))
                if spec.network != "bridge" and not overlays:
                    return
                if self._network is None:
                    raise ContainerError("networks are not available in this engine")
                netns = f"/proc/{pid}/ns/net"
                for index, overlay in enumerate(overlays):
                    state.overlays[overlay.network_id] = self._network.attach_overlay(
                        d.id, netns, overlay, interface_name(index)
                    )
                    d.save_state(state)
                if overlays:
                    self._network.serve_dns(d.id, netns, overlays)
                own_ip = overlays[0].address if overlays else ""
                if spec.network == "bridge":
                    ifname = interface_name(len(overlays))
                    state.network = self._network.attach(d.id, netns, spec.ports, ifname)
                    d.save_state(state)  # on record before anything else can fail
                    own_ip = own_ip or state.network["ip"]
                (d.path / "hosts").write_text(self._hosts(conf["hostname"], own_ip))

            settings = shim.ShimSettings(
                log_path=str(d.log_file),
                exit_path=str(d.exit_file),
                oom_source=cgroup.oom_source(),
                oom_before=cgroup.oom_kills(),
                reexec_after=REEXEC_SHIM_AFTER,
                exit_command=self._exit_command(d.id) if self.cleanup_on_exit else (),
                attach_dir=str(d.path) if spec.tty else "",
                attended_path=str(attended_file),
            )
            wired = spec.network == "bridge" or overlays
            network = self._network if wired else None
            try:
                launched = shim.launch(
                    plan,
                    self._seccomp_prog(),
                    settings,
                    before_exec,
                    meanwhile=network.prepare if network is not None else None,
                )
            except RuntimeEngineError as exc:  # the network's too: nothing may stay behind
                if attached is not None:
                    attached.close()
                metrics.CONTAINER_START_ERRORS.inc()
                state.error = str(exc)
                d.save_state(state)
                self._cleanup(d, conf)
                raise
            state.status = "running"
            state.pid, state.shim_pid = launched.pid, launched.shim_pid
            state.pid_start = proc_start_time(launched.pid)
            state.shim_start = proc_start_time(launched.shim_pid)
            state.started_at = now_rfc3339()
            d.save_state(state)
        metrics.CONTAINER_STARTS.inc()
        metrics.CONTAINER_START_SECONDS.observe(time.perf_counter() - began)
        return attached

    def _exit_command(self, container_id: str) -> tuple[str, ...]:
        return (
            sys.executable,
            "-m",
            "runtime.cli",
            "--root",
            str(self.config.root),
            "cleanup",
            container_id,
        )

    def run(self, spec: ContainerSpec, image: Image) -> str:
        container_id = self.create(spec, image)
        try:
            self.start(container_id)
        except RuntimeEngineError:
            if spec.auto_remove:
                self.remove(container_id, force=True)
            raise
        return container_id

    def wait(self, name_or_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the container ends; return its exit record."""
        d = self.store.find(name_or_id)
        state = d.state()
        if (record := d.exit()) is not None:
            return record
        if state.status != "running":
            raise ContainerError(f"container {d.config()['name']} is not running")
        if alive(state.shim_pid, state.shim_start):
            try:
                pidfd = os.pidfd_open(state.shim_pid)
            except ProcessLookupError:
                pidfd = -1
            if pidfd >= 0:
                try:
                    if not select.select([pidfd], [], [], timeout)[0]:
                        raise TimeoutError(f"container {d.id[:12]} still running after {timeout}s")
                finally:
                    os.close(pidfd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(state.shim_pid, os.WNOHANG)
        record = d.exit()
        if record is None:
            if alive(state.pid, state.pid_start):
                raise ContainerError(f"container {d.id[:12]} lost its shim while still running")
            try:
                said = (d.path / "shim.log").read_text()[-2000:].strip()
            except FileNotFoundError:
                said = ""
            record = {
                "exit_code": 255,
                "signal": 0,
                "oom_killed": False,
                "finished_at": now_rfc3339(),
                "error": f"the shim died without recording the exit{': ' + said if said else ''}",
            }
            write_json(d.exit_file, record, make_parents=False)
        metrics.CONTAINER_EXITS.labels("oom" if record.get("oom_killed") else "exit").inc()
        if not self.cleanup_on_exit:
            self.cleanup(d.id)
        return record

    def watch(self, name_or_id: str) -> Callable[[float], bool]:
        """A function that waits up to `timeout` seconds and says whether the container's
        shim (its log writer and exit recorder) still runs."""
        d = self.store.find(name_or_id)
        state = d.state()
        pidfd = -1
        if state.status == "running" and alive(state.shim_pid, state.shim_start):
            with contextlib.suppress(ProcessLookupError):
                pidfd = os.pidfd_open(state.shim_pid)

        def still_running(timeout: float) -> bool:
            nonlocal pidfd
            if pidfd < 0:
                return False
            if select.select([pidfd], [], [], timeout)[0]:
                os.close(pidfd)
                pidfd = -1
                return False
            return True

        return still_running

    def exec(
        self,
        name_or_id: str,
        argv: Sequence[str],
        stdio: Sequence[int] = (0, 1, 2),
        env: Sequence[str] = (),
        user: str | None = None,
        workdir: str | None = None,
        tty: bool = False,
    ) -> tuple[int, int | None]:
        """Start `argv` inside the running container; return its pid (see exec.wait) and,
        with `tty`, the master side of the terminal made for it inside the container."""
        from runtime.container import exec as container_exec  # not needed to run containers

        d = self.store.find(name_or_id)
        if self._status(d) != "running":
            raise ContainerError(f"container {d.config()['name']} is not running")
        conf, state = d.config(), d.state()
        process = conf["process"]
        merged = dict(e.split("=", 1) for e in process["env"])
        for item in env:
            key, _, value = item.partition("=")
            merged[key] = value
        plan = container_exec.ExecPlan(
            pid=state.pid,
            argv=tuple(argv),
            env=tuple(f"{k}={v}" for k, v in merged.items()),
            cwd=workdir or process["cwd"],
            user=process["user"] if user is None else user,
            cgroup_procs=tuple(ContainerCgroup.from_json(conf["cgroup"]).procs_files),
            last_cap=self._last_cap,
        )
        return container_exec.start(plan, stdio, self._seccomp_prog(), tty)

    @contextlib.contextmanager
    def frozen(self, name_or_id: str) -> Iterator[None]:
        """The container's processes paused for the body (a no-op when it is not running)."""
        d = self.store.find(name_or_id)
        cgroup = ContainerCgroup.from_json(d.config()["cgroup"])
        running = self._status(d) == "running"
        if running:
            cgroup.freeze(True)
        try:
            yield
        finally:
            if running:
                cgroup.freeze(False)

    def layers(self, name_or_id: str) -> tuple[Path, list[Path]]:
        """The container's upper dir and the read-only dirs below it, top first."""
        d = self.store.find(name_or_id)
        lowers = [d.path / "init", *(Path(p) for p in d.config()["lower_dirs"])]
        return d.path / "upper", lowers

    def kill(self, name_or_id: str, sig: int = signal.SIGKILL) -> None:
        d = self.store.find(name_or_id)
        state = d.state()
        if self._status(d) != "running" or state.pid <= 0:
            raise ContainerError(f"container {d.config()['name']} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, sig)

    def stop(self, name_or_id: str, timeout: float | None = None) -> dict[str, Any] | None:
        """Stop signal, a grace period, then SIGKILL; the exit record (None if not running)."""
        d = self.store.find(name_or_id)
        if self._status(d) != "running":
            return d.exit()
        spec = ContainerSpec.from_json(d.config()["spec"])
        grace = spec.stop_timeout if timeout is None else timeout
        sig = (
            signal.Signals[spec.stop_signal]
            if spec.stop_signal.startswith("SIG")
            else int(spec.stop_signal)
        )
        self.kill(d.id, sig)
        try:
            return self.wait(d.id, timeout=grace)
        except TimeoutError:
            ContainerCgroup.from_json(d.config()["cgroup"]).kill_all()
            return self.wait(d.id, timeout=10)

    def remove(self, name_or_id: str, force: bool = False) -> None:
        d = self.store.find(name_or_id)
        if self._status(d) == "running":
            if not force:
                name = d.config()["name"]
                raise ContainerError(f"cannot remove running container {name}: stop it or force")
            self.kill(d.id)
            with contextlib.suppress(TimeoutError):
                self.wait(d.id, timeout=10)
        with d.locked():
            self._cleanup(d, d.config())
            _remove_tree(d.path)

    def cleanup(self, name_or_id: str) -> None:
        """Release what an ended container held (network, cgroup); keep its record and files."""
        d = self.store.find(name_or_id)
        with d.locked():
            if self._status(d) != "running":
                self._cleanup(d, d.config())
            spec = ContainerSpec.from_json(d.config()["spec"])
        if spec.auto_remove and self._status(d) != "running":
            with contextlib.suppress(ContainerError):
                self.remove(d.id)

    def _cleanup(self, d: ContainerDir, conf: dict[str, Any]) -> None:
        if self._network is not None:
            state = d.state()
            if state.network:
                self._network.detach(d.id)
                state.network = {}
                d.save_state(state)
            # Every overlay of the spec and of the run, recorded or not: a start may have
            # failed while attaching one (detaching what is not attached does nothing).
            cluster = [OverlayAttachment(**o) for o in state.cluster_overlays]
            overlays = [*cluster, *ContainerSpec.from_json(conf["spec"]).overlays]
            if overlays:
                self._network.stop_dns(d.id)
            for overlay in overlays:
                self._network.detach_overlay(d.id, overlay)
            if cluster:
                try:
                    self._network.leave_cluster(d.id)
                except RuntimeEngineError as exc:  # swarmd frees them when it finds out
                    log.warning("container %s: cluster addresses not given back: %s", d.id, exc)
            if state.overlays or state.cluster_overlays:
                state.overlays = {}
                state.cluster_overlays = []
                d.save_state(state)
        ContainerCgroup.from_json(conf["cgroup"]).remove()

    # -- queries -------------------------------------------------------------------------

    def _status(self, d: ContainerDir) -> str:
        state = d.state()
        if d.exit_file.exists():
            return "exited"
        if state.status == "running":
            return "running" if alive(state.pid, state.pid_start) else "exited"
        return "created"

    def status(self, name_or_id: str) -> str:
        return self._status(self.store.find(name_or_id))

    def inspect(self, name_or_id: str) -> dict[str, Any]:
        d = self.store.find(name_or_id)
        conf, state, record = d.config(), d.state(), d.exit() or {}
        status = self._status(d)
        spec = conf["spec"]
        return {
            "Id": d.id,
            "Name": conf["name"],
            "Created": conf["created"],
            "Image": conf["image_id"],
            "State": {
                "Status": status,
                "Running": status == "running",
                "Pid": state.pid if status == "running" else 0,
                "ExitCode": record.get("exit_code", 0),
                "OOMKilled": bool(record.get("oom_killed")),
                "Error": state.error or record.get("error", ""),
                "StartedAt": state.started_at,
                "FinishedAt": record.get("finished_at", ""),
            },
            "Config": {
                "Image": conf["image"],
                "Hostname": conf["hostname"],
                "Cmd": conf["process"]["argv"],
                "Env": conf["process"]["env"],
                "WorkingDir": conf["process"]["cwd"],
                "User": conf["process"]["user"],
                "Labels": spec["labels"],
                "Tty": spec["tty"],
            },
            "HostConfig": {
                "Memory": spec["limits"]["memory_bytes"],
                "NanoCpus": spec["limits"]["nano_cpus"],
                "PidsLimit": spec["limits"]["pids"],
                "NetworkMode": spec["network"],
                "PortBindings": spec["ports"],
                "AutoRemove": spec["auto_remove"],
                "CgroupPaths": conf["cgroup"],
            },
            "Mounts": spec["mounts"],
            "NetworkSettings": {**state.network, "Overlays": state.overlays},
            "LogPath": str(d.log_file),
            "GraphDriver": {"UpperDir": str(d.path / "upper"), "LowerDir": conf["lower_dirs"]},
        }

    def list(self, all: bool = False) -> list[dict[str, Any]]:
        out = []
        for d in self.store.all():
            try:
                info = self.inspect(d.id)
            except (FileNotFoundError, ContainerError):
                continue  # removed meanwhile
            if all or info["State"]["Running"]:
                out.append(info)
        return out

    def usage(self, name_or_id: str) -> dict[str, Any]:
        d = self.store.find(name_or_id)
        return ContainerCgroup.from_json(d.config()["cgroup"]).usage()._asdict()

    def serve_dns(self, name_or_id: str) -> None:
        """Answer a running container's DNS queries again (a restarted agent adopting it:
        the resolver's sockets went with the agent that had them)."""
        d = self.store.find(name_or_id)
        spec = ContainerSpec.from_json(d.config()["spec"])
        state = d.state()
        cluster = [OverlayAttachment(**o) for o in state.cluster_overlays]
        overlays = [*cluster, *spec.overlays]
        if self._network is None or not overlays or self._status(d) != "running":
            return
        self._network.serve_dns(d.id, f"/proc/{state.pid}/ns/net", overlays)

    def set_overlay_peers(
        self, overlay: OverlayAttachment, peers: Sequence[tuple[str, str]]
    ) -> None:
        """Where the other endpoints of an overlay network run: (address, node address)
        pairs, as a whole (see runtime.network.overlay)."""
        if self._network is None:
            raise ContainerError("networks are not available in this engine")
        self._network.set_overlay_peers(overlay, peers)

    def limits(self, name_or_id: str) -> Limits:
        return ContainerSpec.from_json(self.store.find(name_or_id).config()["spec"]).limits
