"""The `netns` driver: a machine is a set of namespaces and a cgroup parent on this host.

Each machine has its own network namespace (eth0 on its lab's switch, loopback up), its own
uts namespace (hostname = machine name), a state directory and a cgroup parent in every
hierarchy. The lab's switch is a bridge inside a namespace of its own, so no lab address ever
appears in the host's namespace.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from pyroute2 import IPRoute

from common import libc, namespaces
from deploy import cgroups, mounts, processes
from deploy.state import MachineRecord, Storage

BRIDGE = "br0"
CGROUP_ROOT = "/swarm-machine"


def switch_netns(lab: str) -> str:
    return f"{lab}-switch"


@contextmanager
def netlink(netns: str) -> Iterator[IPRoute]:
    """An rtnetlink socket opened inside network namespace `netns`."""
    with namespaces.entered_netns(netns):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _port_name(address: str) -> str:
    """The switch-side veth name: unique per address within one switch, <= 15 chars."""
    iface = ipaddress.ip_interface(address)
    return f"p{int(iface.ip) - int(iface.network.network_address)}"


def create_switch(lab: str) -> None:
    namespaces.create_bound(namespaces.netns_path(switch_netns(lab)), libc.CLONE_NEWNET)
    with netlink(switch_netns(lab)) as ipr:
        ipr.link("add", ifname=BRIDGE, kind="bridge")
        ipr.link("set", index=ipr.link_lookup(ifname=BRIDGE)[0], state="up")


def remove_switch(lab: str) -> None:
    namespaces.remove_bound(namespaces.netns_path(switch_netns(lab)))


def attach(lab: str, netns: str, address: str) -> None:
    """Wire namespace `netns` to the lab switch as eth0 with `address`; loopback up."""
    port = _port_name(address)
    with netlink(switch_netns(lab)) as sw:
        # A removed machine's namespace is freed asynchronously: its old port may linger.
        for stale in sw.link_lookup(ifname=port):
            sw.link("del", index=stale)
        sw.link(
            "add",
            ifname=port,
            kind="veth",
            peer={"ifname": "eth0", "net_ns_fd": str(namespaces.netns_path(netns))},
        )
        sw.link(
            "set",
            index=sw.link_lookup(ifname=port)[0],
            master=sw.link_lookup(ifname=BRIDGE)[0],
            state="up",
        )
    iface = ipaddress.ip_interface(address)
    with netlink(netns) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("add", index=eth0, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        ipr.link("set", index=eth0, state="up")


def stop_processes(netns: str, cgroup: str | None = None) -> None:
    """Stop everything running in `netns` or (when given) below cgroup parent `cgroup`."""
    path = namespaces.netns_path(netns)

    def find() -> list[int]:
        found = set(namespaces.pids_in(path))
        if cgroup is not None:
            found |= cgroups.pids(cgroup)
        return sorted(found - {os.getpid()})

    processes.stop_all(find)


class Machine:
    """One machine of the netns driver: paths and operations derived from its record."""

    def __init__(self, storage: Storage, record: MachineRecord) -> None:
        self.storage = storage
        self.record = record

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def netns(self) -> Path:
        return namespaces.netns_path(self.name)

    @property
    def uts(self) -> Path:
        return self.storage.machine_dir(self.name) / "uts"

    @property
    def state_dir(self) -> Path:
        return self.storage.machine_dir(self.name) / "state"

    @property
    def cgroup_parent(self) -> str:
        return f"{CGROUP_ROOT}/{self.name}"

    @property
    def running(self) -> bool:
        return namespaces.is_bound(self.netns) and namespaces.is_bound(self.uts)

    def contains(self, pid: int) -> bool:
        """True when process `pid` runs inside the machine (its netns or cgroup parent)."""
        return pid in namespaces.pids_in(self.netns) or pid in cgroups.pids(self.cgroup_parent)

    def create(self) -> None:
        """Make the machine's resources; the caller has saved the record already."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        namespaces.create_bound(self.netns, libc.CLONE_NEWNET)
        namespaces.create_bound(
            self.uts, libc.CLONE_NEWUTS, setup=lambda: libc.sethostname(self.name)
        )
        cgroups.create(self.cgroup_parent)
        attach(self.record.lab, self.name, self.record.address)

    def remove(self) -> None:
        """Remove everything the machine has; safe to repeat and after a crash."""
        stop_processes(self.name, self.cgroup_parent)
        mounts.unmount_below(self.state_dir)
        cgroups.remove(self.cgroup_parent)
        namespaces.remove_bound(self.netns)  # its eth0 and the switch-side peer go with it
        namespaces.remove_bound(self.uts)

    def environment(self, registry: str | None) -> dict[str, str]:
        env = {
            "SWARM_MACHINE_NAME": self.name,
            "SWARM_MACHINE_LAB": self.record.lab,
            "SWARM_MACHINE_ADDR": self.record.ip,
            "SWARM_MACHINE_STATE_DIR": str(self.state_dir),
            "SWARM_MACHINE_CGROUP_PARENT": self.cgroup_parent,
            "HOSTNAME": self.name,
        }
        if registry:
            env["SWARM_MACHINE_REGISTRY"] = registry
        return env

    def _enter(self) -> None:
        """Enter the machine (the calling process must be single-threaded: a child or exec)."""
        cgroups.join(self.cgroup_parent)
        namespaces.enter(self.uts, libc.CLONE_NEWUTS)
        namespaces.enter(self.netns, libc.CLONE_NEWNET)

    def exec(self, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
        """Replace this process with `argv` running inside the machine."""
        self._enter()
        os.execvpe(argv[0], list(argv), {**os.environ, **env})

    def popen(
        self, argv: Sequence[str], env: Mapping[str, str], **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start `argv` inside the machine as a child of this process."""
        procs_files = [
            str(h.mountpoint / self.cgroup_parent.lstrip("/") / "cgroup.procs")
            for h in cgroups.hierarchies()
        ]
        uts, netns = str(self.uts), str(self.netns)

        def preexec() -> None:  # runs in the forked child: raw syscalls only
            pid = str(os.getpid()).encode()
            for procs in procs_files:
                fd = os.open(procs, os.O_WRONLY)
                os.write(fd, pid)
                os.close(fd)
            for path, kind in ((uts, libc.CLONE_NEWUTS), (netns, libc.CLONE_NEWNET)):
                namespaces.enter(path, kind)

        return subprocess.Popen(list(argv), env={**os.environ, **env}, preexec_fn=preexec, **kwargs)
