"""Overlay networks on one node: containers of many machines on one layer-2 segment, over
VXLAN (the shape of libnetwork's overlay driver; REFERENCE.md 4).

Per network, this node keeps a namespace of its own, the sandbox (bound at
`<network dir>/overlay/<network id>/netns`, so lab machines sharing a host never collide),
holding bridge `br0` (the gateway address) and the network's VXLAN device as a port of it.
The device is made from the node's own namespace, which keeps its UDP socket on the node's
address, and lives in the sandbox. A container joins with a veth pair: one end on `br0`, the
other inside the container as `eth0` (or the name asked for), with a MAC derived from its
address and the overlay's MTU. Remote endpoints are programmed as peers (see `vxlan`).

The sandbox is made on the first attach and removed with the last detach. Every change runs
under the network's lock and is recorded (`state.json`) before the resources it names are
made, so a crash leaves only what `detach` and `remove` find and undo; a restarted agent
attaching a running container again finds it attached and changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from common import libc
from common.namespaces import call_in_netns, create_bound, is_bound, open_netns, remove_bound
from runtime.network import links, lock, sysctl, vxlan
from runtime.network.attachment import check_container_id
from runtime.network.bridge import veth_name
from runtime.network.errors import NetworkError
from runtime.network.ipam import mac_for
from runtime.network.rtnl import RtnlSocket
from runtime.network.state_files import read_json, write_json
from runtime.network.vxlan import Peer

T = TypeVar("T")
BRIDGE = "br0"
VXLAN_DEVICE = "vxlan0"
FORMAT_VERSION = 1
NETWORK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FIRST_VNI, LAST_VNI = 1, (1 << 24) - 1


@dataclass(frozen=True)
class OverlaySpec:
    """One overlay network as the managers allocated it, and this node's VTEP address."""

    network_id: str
    vni: int
    subnet: IPv4Network
    gateway: IPv4Address
    local: IPv4Address

    def validate(self) -> None:
        if not NETWORK_ID_RE.match(self.network_id):
            raise NetworkError(f"invalid overlay network id {self.network_id!r}")
        if not FIRST_VNI <= self.vni <= LAST_VNI:
            raise NetworkError(f"VNI {self.vni} is outside 1-{LAST_VNI}")
        if self.gateway not in self.subnet:
            raise NetworkError(f"gateway {self.gateway} is outside subnet {self.subnet}")


class Endpoint(NamedTuple):
    """A container on the overlay: its interface and address, and its veth in the sandbox."""

    container_id: str
    ifname: str
    address: IPv4Interface
    mac: str
    veth: str

    def to_json(self) -> dict[str, str]:
        return {
            "container_id": self.container_id,
            "ifname": self.ifname,
            "address": str(self.address),
            "mac": self.mac,
            "veth": self.veth,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoint:
        return cls(
            str(data["container_id"]),
            str(data["ifname"]),
            IPv4Interface(data["address"]),
            str(data["mac"]),
            str(data["veth"]),
        )


class _State:
    """The network's record on this node: its spec, local endpoints and remote peers."""

    def __init__(self, path: Path, spec: OverlaySpec) -> None:
        self.path = path
        self.spec = spec
        self.endpoints: dict[str, Endpoint] = {}
        self.peers: list[Peer] = []
        data = read_json(path)
        if data is not None:
            self._load(data)

    def _load(self, data: Any) -> None:
        try:
            if data["version"] != FORMAT_VERSION:
                raise NetworkError(f"unknown format version {data['version']}")
            vni, subnet = int(data["vni"]), IPv4Network(data["subnet"])
            endpoints = [Endpoint.from_json(e) for e in data["endpoints"]]
            peers = [
                Peer(IPv4Address(p["ip"]), str(p["mac"]), IPv4Address(p["vtep"]))
                for p in data["peers"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise NetworkError(f"overlay state {self.path} is damaged: {exc!r}") from None
        if (vni, subnet) != (self.spec.vni, self.spec.subnet):
            raise NetworkError(
                f"overlay {self.spec.network_id} is set up here with VNI {vni} and subnet "
                f"{subnet}, not {self.spec.vni} and {self.spec.subnet}: remove it first"
            )
        self.endpoints = {e.container_id: e for e in endpoints}
        self.peers = peers

    def save(self) -> None:
        write_json(
            self.path,
            {
                "version": FORMAT_VERSION,
                "vni": self.spec.vni,
                "subnet": str(self.spec.subnet),
                "endpoints": [e.to_json() for _, e in sorted(self.endpoints.items())],
                "peers": [
                    {"ip": str(p.ip), "mac": p.mac, "vtep": str(p.vtep)} for p in sorted(self.peers)
                ],
            },
        )


class OverlayNetwork:
    """Overlay network `spec` on this node, with its state under `directory` (one per
    network: `<network dir>/overlay/<network id>`). Call from the node's own namespace."""

    def __init__(self, directory: Path, spec: OverlaySpec) -> None:
        spec.validate()
        self.spec = spec
        self.directory = directory
        self.sandbox = directory / "netns"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_State]:
        with lock.exclusive(self.directory / "lock"):
            yield _State(self.directory / "state.json", self.spec)

    # -- the sandbox ---------------------------------------------------------------------

    def _netlink(self, work: Callable[[RtnlSocket], T]) -> T:
        """`work(sock)` with a netlink socket inside the sandbox."""

        def body() -> T:
            with RtnlSocket() as sock:
                return work(sock)

        return call_in_netns(self.sandbox, body)

    def _devices(self, sock: RtnlSocket) -> tuple[links.LinkState, links.LinkState]:
        """The sandbox's bridge and VXLAN device."""
        bridge, device = links.link_state(sock, BRIDGE), links.link_state(sock, VXLAN_DEVICE)
        if bridge is None or device is None:
            raise NetworkError(f"the overlay sandbox of {self.spec.network_id} lost its devices")
        return bridge, device

    def _ensure_sandbox(self, state: _State) -> None:
        """Make the sandbox, its bridge and VXLAN device where missing (idempotent), and
        program the recorded peers."""
        if not is_bound(self.sandbox):
            self.sandbox.unlink(missing_ok=True)  # a crash between create and bind
            create_bound(self.sandbox, libc.CLONE_NEWNET)
        gateway = IPv4Interface(f"{self.spec.gateway}/{self.spec.subnet.prefixlen}")

        def bridge(sock: RtnlSocket) -> bool:
            sysctl.bridge_netfilter_off()  # nothing here filters the bridge's frames
            links.set_up(sock, links.LOOPBACK_INDEX)
            index = links.ensure_bridge(sock, BRIDGE, gateway, mac_for(self.spec.gateway))
            links.set_up(sock, index)
            return links.link_state(sock, VXLAN_DEVICE) is not None

        if not self._netlink(bridge):
            fd = open_netns(self.sandbox)
            try:
                with RtnlSocket() as sock:  # the node's namespace: the UDP socket stays here
                    mtu = vxlan.underlay_mtu(sock, self.spec.local) - vxlan.OVERHEAD
                    vxlan.create_device(sock, VXLAN_DEVICE, self.spec.vni, self.spec.local, mtu, fd)
            finally:
                os.close(fd)

            def enslave(sock: RtnlSocket) -> None:
                bridge_link, device = self._devices(sock)
                links.set_master(sock, device.index, bridge_link.index)
                links.set_up(sock, device.index)

            self._netlink(enslave)
        self._program(state.peers)

    def _program(self, peers: Iterable[Peer]) -> None:
        remote = [p for p in peers if p.vtep != self.spec.local]
        self._netlink(lambda sock: vxlan.program_peers(sock, self._devices(sock)[1].index, remote))

    # -- containers ----------------------------------------------------------------------

    def attach(
        self, container_id: str, netns_path: str, address: IPv4Address, ifname: str = "eth0"
    ) -> Endpoint:
        """Put the container whose network namespace is at `netns_path` on the overlay with
        `address` on interface `ifname`; attaching it again returns its endpoint."""
        check_container_id(container_id)
        if address not in self.spec.subnet or address == self.spec.gateway:
            raise NetworkError(f"{address} is no container address of {self.spec.subnet}")
        with links.container_netns(netns_path) as container_fd, self._locked() as state:
            known = state.endpoints.get(container_id)
            if known is not None:
                if known.address.ip != address or known.ifname != ifname:
                    raise NetworkError(
                        f"container {container_id[:12]} is on overlay {self.spec.network_id} "
                        f"already, as {known.address} on {known.ifname}"
                    )
                return known
            taken = {e.container_id for e in state.endpoints.values() if e.address.ip == address}
            if taken:
                raise NetworkError(f"{address} is taken on overlay {self.spec.network_id}")
            endpoint = Endpoint(
                container_id,
                ifname,
                IPv4Interface(f"{address}/{self.spec.subnet.prefixlen}"),
                mac_for(address),
                veth_name(container_id),
            )
            state.endpoints[container_id] = endpoint
            state.save()  # on record before the veth it names exists
            self._ensure_sandbox(state)

            def plug(sock: RtnlSocket) -> None:
                bridge, device = self._devices(sock)
                links.create_veth(
                    sock,
                    endpoint.veth,
                    bridge.index,
                    container_fd,
                    endpoint.mac,
                    ifname=ifname,
                    mtu=device.mtu,
                )

            self._netlink(plug)
            links.configure_container(container_fd, endpoint.address, None, ifname=ifname)
            return endpoint

    def detach(self, container_id: str) -> None:
        """Take the container off the overlay (absent is fine); the sandbox goes with the
        node's last endpoint."""
        check_container_id(container_id)
        if not self.directory.exists():
            return  # the network is not set up on this node at all
        with self._locked() as state:
            endpoint = state.endpoints.get(container_id)
            if endpoint is None:
                return
            if is_bound(self.sandbox):  # the veth's container end goes with it
                self._netlink(lambda sock: links.delete_link(sock, endpoint.veth))
            del state.endpoints[container_id]
            if state.endpoints:
                state.save()
                return
            self._remove(state)

    def set_peers(self, peers: Iterable[Peer]) -> None:
        """The network's endpoints on other nodes, as a whole (entries for this node's own
        address are ignored); programmed now if the sandbox exists, else when it is made."""
        wanted = sorted(set(peers))
        if not wanted and not self.directory.exists():
            return  # nothing here, nothing to forget
        with self._locked() as state:
            state.peers = wanted
            if not state.endpoints and not wanted:
                self._remove(state)  # the network is of no more use on this node
                return
            state.save()
            if state.endpoints and is_bound(self.sandbox):
                self._program(wanted)

    def remove(self) -> None:
        """Remove the network from this node: sandbox, devices, state (idempotent)."""
        if not self.directory.exists():
            remove_bound(self.sandbox)
            return
        with self._locked() as state:
            self._remove(state)

    def _remove(self, state: _State) -> None:
        # The sandbox's devices (bridge, VXLAN, veths and their container ends) die with it.
        remove_bound(self.sandbox)
        state.endpoints.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
