"""What swarm-machine does: machines and labs (a switch, a registry, N machines).

Every change validates all of its input before it makes anything, writes its record before
the resources it names, and undoes itself on failure, so bad input leaves nothing behind and a
crash leaves only what `rm` or `lab down` can find and remove.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Sequence
from typing import Any

from common import libc, namespaces
from deploy import netns_driver, registry
from deploy.errors import MachineError
from deploy.netns_driver import Machine
from deploy.state import LabRecord, MachineRecord, Storage, validate_name

DEFAULT_LAB = "lab"
DEFAULT_SUBNET = "10.77.0.0/16"
REGISTRY_HOST = 2  # the registry's host number in the lab subnet
FIRST_MACHINE_HOST = 10


def require_root() -> None:
    if os.geteuid() != 0:
        raise MachineError("swarm-machine must run as root (it creates namespaces and cgroups)")


def machine_names(lab: str, count: int) -> list[str]:
    return [f"{lab}-node{i}" for i in range(1, count + 1)]


def free_addresses(subnet: str, used: set[str], count: int) -> list[str]:
    """The `count` lowest free machine addresses ("ip/prefix") of `subnet`."""
    network = ipaddress.ip_network(subnet)
    taken = {ipaddress.ip_interface(a).ip for a in used}
    out: list[str] = []
    for n in range(FIRST_MACHINE_HOST, network.num_addresses - 1):
        if len(out) == count:
            break
        ip = network.network_address + n
        if ip not in taken:
            out.append(f"{ip}/{network.prefixlen}")
    if len(out) < count:
        raise MachineError(f"no free address left in {subnet} for {count} more machine(s)")
    return out


class Lab:
    """swarm-machine's operations over one storage directory."""

    def __init__(self, storage: Storage | None = None) -> None:
        require_root()
        self.storage = storage or Storage()

    # -- queries -------------------------------------------------------------------------

    def machine(self, name: str) -> Machine:
        rec = self.storage.machine(name)
        if rec is None:
            raise MachineError(f"no such machine: {name}")
        return Machine(self.storage, rec)

    def machines(self, lab: str | None = None) -> list[Machine]:
        return [Machine(self.storage, r) for r in self.storage.machines(lab)]

    def registry_address(self, lab: str) -> str | None:
        rec = self.storage.lab(lab)
        if rec is None or not rec.registry:
            return None
        return f"{self._host(rec.subnet, REGISTRY_HOST)}:{registry.PORT}"

    def inspect(self, name: str) -> dict[str, Any]:
        m = self.machine(name)
        return {
            "name": m.name,
            "driver": "netns",
            "lab": m.record.lab,
            "address": m.record.ip,
            "cidr": m.record.address,
            "state": self._machine_state(m),
            "hostname": m.name,
            "netns": str(m.netns),
            "state_dir": str(m.state_dir),
            "cgroup_parent": m.cgroup_parent,
            "registry": self.registry_address(m.record.lab),
        }

    def status(self, lab: str) -> dict[str, Any]:
        rec = self.storage.lab(lab)
        if rec is None:
            return {"name": lab, "state": "down", "registry": None, "machines": []}
        machines = self.machines(lab)
        healthy = (
            rec.state == "up"
            and namespaces.is_bound(namespaces.netns_path(netns_driver.switch_netns(lab)))
            and (not rec.registry or self._registry_running(lab))
            and all(m.running for m in machines)
        )
        return {
            "name": lab,
            "state": "up" if healthy else ("degraded" if rec.state == "up" else rec.state),
            "subnet": rec.subnet,
            "registry": self.registry_address(lab),
            "machines": [
                {"name": m.name, "address": m.record.ip, "state": self._machine_state(m)}
                for m in machines
            ],
        }

    # -- machines ------------------------------------------------------------------------

    def create(self, names: Sequence[str], lab: str = DEFAULT_LAB) -> list[Machine]:
        """Create machines on `lab`'s switch (made on demand); all or nothing."""
        validate_name(lab, "lab")
        with self.storage.locked():
            self._check_free(names)
            rec = self.storage.lab(lab)
            if rec is None:
                rec = LabRecord(name=lab, subnet=DEFAULT_SUBNET, explicit=False, registry=False)
                self.storage.save_lab(rec)
                try:
                    netns_driver.create_switch(lab)
                except BaseException:
                    self._teardown_lab(lab)
                    raise
                rec.state = "up"
                self.storage.save_lab(rec)
            elif rec.state != "up":
                raise MachineError(f"lab {lab} is {rec.state}: run `swarm-machine lab down {lab}`")
            try:
                return self._create_machines(rec, names)
            except BaseException:
                if not rec.explicit and not self.storage.machines(lab):
                    self._teardown_lab(lab)
                raise

    def remove(self, names: Sequence[str]) -> None:
        """Remove machines; every name must exist, or nothing is removed."""
        with self.storage.locked():
            unknown = [n for n in names if self.storage.machine(n) is None]
            if unknown:
                raise MachineError(f"no such machine: {', '.join(unknown)}")
            self._refuse_if_inside([self.machine(n) for n in names])
            labs = {self.machine(n).record.lab for n in names}
            for name in dict.fromkeys(names):
                self._remove_machine(self.machine(name))
            for lab in labs:
                rec = self.storage.lab(lab)
                if rec is not None and not rec.explicit and not self.storage.machines(lab):
                    self._teardown_lab(lab)

    # -- labs ----------------------------------------------------------------------------

    def up(self, lab: str, machines: int, subnet: str = DEFAULT_SUBNET) -> dict[str, Any]:
        """Bring up a switch, a registry seeded with busybox, and `machines` machines."""
        validate_name(lab, "lab")
        if not 1 <= machines <= 250:
            raise MachineError(f"--machines must be between 1 and 250, not {machines}")
        try:
            network = ipaddress.ip_network(subnet)
        except ValueError as exc:
            raise MachineError(f"invalid subnet {subnet!r}: {exc}") from None
        if network.version != 4 or network.num_addresses < FIRST_MACHINE_HOST + machines + 1:
            raise MachineError(f"subnet {subnet} is not an IPv4 network large enough for the lab")
        with self.storage.locked():
            if self.storage.lab(lab) is not None:
                raise MachineError(
                    f"lab {lab} is already up (`swarm-machine lab down {lab}` first)"
                )
            names = machine_names(lab, machines)
            self._check_free([*names, netns_driver.switch_netns(lab), registry.registry_netns(lab)])
            rec = LabRecord(name=lab, subnet=str(network), explicit=True, registry=True)
            self.storage.save_lab(rec)
            try:
                netns_driver.create_switch(lab)
                self._start_registry(rec)
                self._create_machines(rec, names)
            except BaseException:
                self._teardown_lab(lab)
                raise
            rec.state = "up"
            self.storage.save_lab(rec)
        return self.status(lab)

    def down(self, lab: str) -> bool:
        """Remove everything of `lab`; False when there was nothing to remove."""
        with self.storage.locked():
            if self.storage.lab(lab) is None:
                return False
            self._refuse_if_inside(self.machines(lab))
            self._teardown_lab(lab)
            return True

    # -- internals -----------------------------------------------------------------------

    @staticmethod
    def _host(subnet: str, number: int) -> str:
        return str(ipaddress.ip_network(subnet).network_address + number)

    def _machine_state(self, m: Machine) -> str:
        if m.record.state != "running":
            return m.record.state
        return "running" if m.running else "error"

    @staticmethod
    def _refuse_if_inside(machines: Sequence[Machine]) -> None:
        """Removing a machine kills everything in it: never the caller itself."""
        for m in machines:
            if m.contains(os.getpid()):
                raise MachineError(f"cannot remove machine {m.name} from inside it")

    def _registry_running(self, lab: str) -> bool:
        return bool(namespaces.pids_in(namespaces.netns_path(registry.registry_netns(lab))))

    def _check_free(self, names: Sequence[str]) -> None:
        for name in names:
            validate_name(name)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise MachineError(f"duplicate machine name: {', '.join(dupes)}")
        taken = [
            n
            for n in names
            if self.storage.machine(n) is not None or os.path.lexists(namespaces.netns_path(n))
        ]
        if taken:
            raise MachineError(f"machine or network namespace already exists: {', '.join(taken)}")

    def _create_machines(self, rec: LabRecord, names: Sequence[str]) -> list[Machine]:
        made: list[Machine] = []
        try:
            used = {m.address for m in self.storage.machines(rec.name)}
            addresses = free_addresses(rec.subnet, used, len(names))
            for name, address in zip(names, addresses, strict=True):
                machine = Machine(self.storage, MachineRecord(name, rec.name, address))
                self.storage.save_machine(machine.record)
                made.append(machine)
                machine.create()
                machine.record.state = "running"
                self.storage.save_machine(machine.record)
        except BaseException:
            for machine in made:
                self._remove_machine(machine)
            raise
        return made

    def _remove_machine(self, machine: Machine) -> None:
        machine.record.state = "removing"
        self.storage.save_machine(machine.record)
        machine.remove()
        shutil.rmtree(self.storage.machine_dir(machine.name))

    def _start_registry(self, rec: LabRecord) -> None:
        ns = registry.registry_netns(rec.name)
        address = self._host(rec.subnet, REGISTRY_HOST)
        namespaces.create_bound(namespaces.netns_path(ns), libc.CLONE_NEWNET)
        prefix = ipaddress.ip_network(rec.subnet).prefixlen
        netns_driver.attach(rec.name, ns, f"{address}/{prefix}")
        registry.start(rec.name, self.storage.lab_dir(rec.name) / "registry", address)
        registry.wait_ready(rec.name, address)
        registry.seed_busybox(rec.name, address)

    def _teardown_lab(self, lab: str) -> None:
        rec = self.storage.lab(lab)
        if rec is not None:
            rec.state = "removing"
            self.storage.save_lab(rec)
        for machine in self.machines(lab):
            self._remove_machine(machine)
        ns = registry.registry_netns(lab)
        netns_driver.stop_processes(ns)
        namespaces.remove_bound(namespaces.netns_path(ns))
        netns_driver.remove_switch(lab)
        if self.storage.lab_dir(lab).exists():
            shutil.rmtree(self.storage.lab_dir(lab))
