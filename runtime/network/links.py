"""Netlink work for the bridge network: the bridge, veth pairs, and the container side
(eth0 address, loopback, default route), over `rtnl.RtnlSocket`.

A socket belongs to the network namespace of the thread that created it: the caller's for
the host side, a short-lived thread inside the container's namespace (call_in_netns)
for the container side.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from common.namespaces import call_in_netns, open_netns
from runtime.network.errors import NetworkError
from runtime.network.rtnl import CREATE, Request, RtnlSocket

CONTAINER_IFNAME = "eth0"
LOOPBACK_INDEX = 1  # the kernel gives lo index 1 in every network namespace
MAIN_TABLE = 254
RTPROT_STATIC = 4
RTN_UNICAST = 1


@contextlib.contextmanager
def container_netns(path: str) -> Iterator[int]:
    """An fd on the network namespace at `path`, closed after the body; NetworkError when
    there is none."""
    try:
        fd = open_netns(path)
    except OSError as exc:
        raise NetworkError(f"cannot open network namespace {path}: {exc.strerror}") from None
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def netlink_errors(what: str) -> Iterator[None]:
    """Turn a netlink failure of `what` into a NetworkError naming it."""
    try:
        yield
    except OSError as exc:
        raise NetworkError(f"{what}: {exc.strerror or exc}") from None


def _link_msg(index: int = 0, name: str | None = None, up: bool | None = None) -> Any:
    msg = ifinfmsg()
    msg["index"] = index
    if up is not None:
        msg["flags"] = IFF_UP if up else 0
        msg["change"] = IFF_UP
    if name is not None:
        msg["attrs"] = [("IFLA_IFNAME", name)]
    return msg


@dataclass(frozen=True)
class LinkState:
    """What the engine needs to know of an existing link."""

    index: int
    up: bool
    mac: str
    kind: str | None
    mtu: int


def link_state(sock: RtnlSocket, name: str) -> LinkState | None:
    """Index, admin state, MAC and kind of link `name`; None when there is no such link."""
    try:
        (msg,) = sock.call([Request(RTM_GETLINK, _link_msg(name=name))])
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise NetworkError(f"cannot look up {name}: {exc.strerror}") from None
    return LinkState(
        index=int(msg["index"]),
        up=bool(msg["flags"] & IFF_UP),
        mac=str(msg.get_attr("IFLA_ADDRESS")),
        kind=msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
        mtu=int(msg.get_attr("IFLA_MTU") or 0),
    )


def ensure_bridge(sock: RtnlSocket, name: str, gateway: IPv4Interface, mac: str) -> int:
    """Create bridge `name` with address `gateway` unless it exists; returns its index.

    Refuses a link of that name that is not a bridge or has another IPv4 address.
    """
    with netlink_errors(f"cannot create bridge {name}"):
        if link_state(sock, name) is None:
            create = _link_msg(name=name)
            create["attrs"] += [
                ("IFLA_ADDRESS", mac),
                ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]}),
            ]
            with contextlib.suppress(FileExistsError):  # made by a racing engine: fine
                sock.call([Request(RTM_NEWLINK, create, CREATE)])
        found = link_state(sock, name)
        if found is None:
            raise NetworkError(f"bridge {name} vanished while being set up")
        if found.kind != "bridge":
            raise NetworkError(f"link {name} exists and is not a bridge (it is {found.kind})")
        present = {
            IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
            for a in sock.dump(Request(RTM_GETADDR, _addr_msg()))
            if a["index"] == found.index
        }
        if gateway not in present:
            if present:
                have = ", ".join(sorted(map(str, present)))
                raise NetworkError(
                    f"bridge {name} has address {have}, not {gateway}: it was made for another "
                    "subnet; remove it (teardown) or configure that subnet"
                )
            sock.call([Request(RTM_NEWADDR, _addr_msg(found.index, gateway), CREATE)])
    return found.index


def _addr_msg(index: int = 0, address: IPv4Interface | None = None) -> Any:
    msg = ifaddrmsg()
    msg["family"] = socket.AF_INET
    msg["index"] = index
    if address is not None:
        msg["prefixlen"] = address.network.prefixlen
        msg["attrs"] = [("IFA_LOCAL", str(address.ip)), ("IFA_ADDRESS", str(address.ip))]
    return msg


def set_up(sock: RtnlSocket, index: int) -> None:
    with netlink_errors(f"cannot bring up link {index}"):
        sock.call([Request(RTM_NEWLINK, _link_msg(index, up=True))])


def delete_link(sock: RtnlSocket, name: str) -> bool:
    """Delete link `name` (a veth's peer goes with it); False when it was already gone."""
    try:
        sock.call([Request(RTM_DELLINK, _link_msg(name=name))])
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return False
        raise NetworkError(f"cannot delete {name}: {exc.strerror}") from None
    return True


def create_veth(
    sock: RtnlSocket,
    host_name: str,
    bridge: int,
    netns_fd: int,
    mac: str,
    *,
    ifname: str = CONTAINER_IFNAME,
    mtu: int = 0,
) -> None:
    """A veth pair in one request: `host_name` up on the bridge, and its peer made directly
    inside the namespace at `netns_fd` as `ifname` with `mac` (no move or rename needed; it
    cannot be brought up in the same request: the kernel refuses with ENOTCONN). `mtu` 0
    keeps the kernel's default."""
    peer_attrs: list[tuple[str, Any]] = [
        ("IFLA_IFNAME", ifname),
        ("IFLA_NET_NS_FD", netns_fd),
        ("IFLA_ADDRESS", mac),
    ]
    msg = _link_msg(name=host_name, up=True)
    if mtu:
        peer_attrs.append(("IFLA_MTU", mtu))
        msg["attrs"].append(("IFLA_MTU", mtu))
    info = {
        "attrs": [
            ("IFLA_INFO_KIND", "veth"),
            ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}),
        ]
    }
    msg["attrs"] += [("IFLA_MASTER", bridge), ("IFLA_LINKINFO", info)]
    try:
        sock.call([Request(RTM_NEWLINK, msg, CREATE)])
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EEXIST:
            reason += f" ({host_name} exists here, or the container already has {ifname})"
        raise NetworkError(f"cannot create veth {host_name}: {reason}") from None


def set_master(sock: RtnlSocket, index: int, bridge: int) -> None:
    """Make link `index` a port of bridge `bridge`."""
    msg = _link_msg(index)
    msg["attrs"] = [("IFLA_MASTER", bridge)]
    with netlink_errors(f"cannot add link {index} to bridge {bridge}"):
        sock.call([Request(RTM_NEWLINK, msg)])


def configure_container(
    netns_fd: int,
    address: IPv4Interface,
    gateway: IPv4Address | None,
    *,
    ifname: str = CONTAINER_IFNAME,
) -> None:
    """Inside the container's namespace: lo and `ifname` up with `address`, and a default
    route via `gateway` unless it is None (a network that is not the container's way out)."""

    def work() -> None:
        with RtnlSocket() as sock:
            found = link_state(sock, ifname)
            if found is None:
                raise NetworkError(f"the container has no {ifname}")
            requests = [
                Request(RTM_NEWLINK, _link_msg(LOOPBACK_INDEX, up=True)),
                Request(RTM_NEWADDR, _addr_msg(found.index, address), CREATE),
                Request(RTM_NEWLINK, _link_msg(found.index, up=True)),
            ]
            if gateway is not None:
                route = rtmsg()
                route["family"] = socket.AF_INET
                route["table"] = MAIN_TABLE
                route["proto"] = RTPROT_STATIC
                route["type"] = RTN_UNICAST
                route["attrs"] = [("RTA_GATEWAY", str(gateway))]
                requests.append(Request(RTM_NEWROUTE, route, CREATE))
            with netlink_errors(f"cannot configure {ifname} in the container"):
                sock.call(requests)

    call_in_netns(netns_fd, work)


def setup_loopback(netns_path: str) -> None:
    """For `--network none`: bring up lo inside the namespace at `netns_path`."""

    def work() -> None:
        with RtnlSocket() as sock:
            set_up(sock, LOOPBACK_INDEX)

    with container_netns(netns_path) as fd:
        call_in_netns(fd, work)
