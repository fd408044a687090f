"""The VXLAN half of an overlay network, over netlink: the device, and the static neighbour
and forwarding entries that say where each remote endpoint lives.

Nothing is learned and nothing is multicast (REFERENCE.md 4): the managers know every
endpoint, so each remote one gets a permanent neighbour entry (its IP -> its MAC, which the
device answers ARP from: `proxy`) and a permanent FDB entry (its MAC -> its node's address).
Entries are programmed with replace semantics and reconciled against what the kernel holds,
so doing it again after a flap or a restart changes nothing.
"""

from __future__ import annotations

import socket
from collections.abc import Collection
from ipaddress import IPv4Address
from typing import Any, NamedTuple

from pyroute2.netlink import NLM_F_CREATE, NLM_F_REPLACE
from pyroute2.netlink.rtnl import (
    RTM_DELNEIGH,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from runtime.network.errors import NetworkError
from runtime.network.rtnl import CREATE, Request, RtnlSocket

VXLAN_PORT = 4789  # IANA's; the kernel's default is 8472 (REFERENCE.md 4): always set it
OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
AF_BRIDGE = 7
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
REPLACE = NLM_F_CREATE | NLM_F_REPLACE


class Peer(NamedTuple):
    """A remote endpoint: its overlay address and MAC, and its node's (VTEP) address."""

    ip: IPv4Address
    mac: str
    vtep: IPv4Address


def underlay_mtu(sock: RtnlSocket, local: IPv4Address) -> int:
    """The MTU of the link that holds address `local` in the socket's namespace."""
    addresses = ifaddrmsg()
    addresses["family"] = socket.AF_INET
    index = next(
        (
            int(a["index"])
            for a in sock.dump(Request(RTM_GETADDR, addresses))
            if a.get_attr("IFA_LOCAL") == str(local)
        ),
        None,
    )
    if index is None:
        raise NetworkError(f"no interface of this node has address {local} (the VTEP)")
    link = ifinfmsg()
    link["index"] = index
    (found,) = sock.call([Request(RTM_GETLINK, link)])
    return int(found.get_attr("IFLA_MTU"))


def create_device(
    sock: RtnlSocket, name: str, vni: int, local: IPv4Address, mtu: int, netns_fd: int
) -> None:
    """A VXLAN device for `vni` made from the socket's namespace, which keeps its UDP socket
    (bound to `local`:4789), and placed in the namespace at `netns_fd` as `name`."""
    data = [
        ("IFLA_VXLAN_ID", vni),
        ("IFLA_VXLAN_LOCAL", str(local)),
        ("IFLA_VXLAN_PORT", VXLAN_PORT),
        ("IFLA_VXLAN_LEARNING", 0),
        ("IFLA_VXLAN_PROXY", 1),
    ]
    msg = ifinfmsg()
    msg["attrs"] = [
        ("IFLA_IFNAME", name),
        ("IFLA_MTU", mtu),
        ("IFLA_NET_NS_FD", netns_fd),
        (
            "IFLA_LINKINFO",
            {"attrs": [("IFLA_INFO_KIND", "vxlan"), ("IFLA_INFO_DATA", {"attrs": data})]},
        ),
    ]
    try:
        sock.call([Request(RTM_NEWLINK, msg, CREATE)])
    except OSError as exc:
        raise NetworkError(
            f"cannot create the VXLAN device of VNI {vni} on {local}: {exc.strerror}"
        ) from None


def _neigh(family: int, index: int, state: int = 0, flags: int = 0) -> Any:
    msg = ndmsg()
    msg["family"] = family
    msg["ifindex"] = index
    msg["state"] = state
    msg["flags"] = flags
    return msg


def _current(sock: RtnlSocket, index: int) -> tuple[dict[str, str], dict[str, str]]:
    """(neighbours IP -> MAC, FDB MAC -> VTEP) that the kernel holds for device `index`."""
    neighbours = {
        str(m.get_attr("NDA_DST")): str(m.get_attr("NDA_LLADDR"))
        for m in sock.dump(Request(RTM_GETNEIGH, _neigh(socket.AF_INET, index)))
        if m["ifindex"] == index and m["state"] & NUD_PERMANENT
    }
    fdb = {
        str(m.get_attr("NDA_LLADDR")): str(m.get_attr("NDA_DST"))
        for m in sock.dump(Request(RTM_GETNEIGH, _neigh(AF_BRIDGE, index)))
        if m["ifindex"] == index and m["flags"] & NTF_SELF and m.get_attr("NDA_DST")
    }
    return neighbours, fdb


def program_peers(sock: RtnlSocket, index: int, peers: Collection[Peer]) -> None:
    """Make device `index`'s entries exactly `peers`: missing or changed ones written,
    entries of endpoints no longer there deleted."""
    neighbours, fdb = _current(sock, index)
    wanted_neigh = {str(p.ip): p.mac for p in peers}
    wanted_fdb = {p.mac: str(p.vtep) for p in peers}
    requests: list[Request] = []
    for mac, vtep in wanted_fdb.items():
        if fdb.get(mac) != vtep:
            msg = _neigh(AF_BRIDGE, index, NUD_PERMANENT | NUD_NOARP, NTF_SELF)
            msg["attrs"] = [("NDA_LLADDR", mac), ("NDA_DST", vtep)]
            requests.append(Request(RTM_NEWNEIGH, msg, REPLACE))
    for ip, mac in wanted_neigh.items():
        if neighbours.get(ip) != mac:
            msg = _neigh(socket.AF_INET, index, NUD_PERMANENT)
            msg["attrs"] = [("NDA_DST", ip), ("NDA_LLADDR", mac)]
            requests.append(Request(RTM_NEWNEIGH, msg, REPLACE))
    for ip, mac in neighbours.items():
        if ip not in wanted_neigh:
            msg = _neigh(socket.AF_INET, index)
            msg["attrs"] = [("NDA_DST", ip), ("NDA_LLADDR", mac)]
            requests.append(Request(RTM_DELNEIGH, msg))
    for mac, vtep in fdb.items():
        if mac not in wanted_fdb:
            msg = _neigh(AF_BRIDGE, index, flags=NTF_SELF)
            msg["attrs"] = [("NDA_LLADDR", mac), ("NDA_DST", vtep)]
            requests.append(Request(RTM_DELNEIGH, msg))
    if not requests:
        return
    try:
        sock.call(requests)
    except OSError as exc:
        raise NetworkError(
            f"cannot program the overlay's remote endpoints: {exc.strerror}"
        ) from None
