"""The routing mesh's end on one node: ports published in ingress mode answer on every
node and reach a running task of their service on any node.

Each node keeps one namespace for it, the ingress sandbox (as Docker's ingress-sbox): on the
ingress overlay network with the node's own address there (eth0), and on the node's bridge
(eth1). A connection to a published port of the node is sent to the sandbox (DNAT in the
node's namespace), which spreads it over the service's running tasks on the ingress network
(DNAT to a random task, with the target port). Both rule sets are replaced as a whole when
the published ports or the tasks change.

The task sees the client's own address (Docker masquerades here and loses it: its issue
#25526). The answers must then go back through the sandbox that sent the connection, where
conntrack undoes both DNATs, not out of the task's default route: in each task on the
ingress network, a connection arriving on the ingress interface is marked (conntrack mark)
with the address of the sandbox it came from, read from the frame's source MAC (02:42 then
the sender's address, as every Shoal MAC); the answers carry that mark, and one policy
routing rule per node sends marked packets to that node's sandbox (`program_return_paths`).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import NamedTuple

from common import libc
from common.namespaces import call_in_netns, create_bound, is_bound, remove_bound
from runtime.network import nft, nft_json, sysctl
from runtime.network.errors import NetworkError
from runtime.network.nft_json import Command, Expr

SANDBOX_ID = "ingress-sbox"  # its name as a container of the overlay and of the bridge
HOST_TABLE = "shoal_mesh"
SANDBOX_TABLE = "shoal_ingress"
OVERLAY_IFNAME = "eth0"
BRIDGE_IFNAME = "eth1"
RETURN_TABLE = "shoal_mesh_return"
# Before the main table's rule (32766): marked answers go back through their sandbox.
RETURN_RULE_PRIORITY = 100
# Bits 64-95 of the link-layer header: the last four bytes of the source MAC, the sender's
# IPv4 address (runtime.network.ipam.mac_for).
SENDER_ADDRESS: Expr = {"payload": {"base": "ll", "offset": 64, "len": 32}}


class Published(NamedTuple):
    """A port published in ingress mode: where it answers, where its tasks listen."""

    protocol: str  # tcp | udp
    port: int
    target_port: int


def sandbox_path(network_dir: Path) -> Path:
    return network_dir / "ingress" / "netns"


def ensure_sandbox(path: Path) -> bool:
    """Make the sandbox namespace unless it exists; True when it was made now."""
    if is_bound(path):
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.unlink(missing_ok=True)  # a crash between create and bind
    create_bound(path, libc.CLONE_NEWNET)
    call_in_netns(path, lambda: sysctl.write("ipv4/ip_forward", "1"))
    return True


def remove_sandbox(path: Path) -> None:
    remove_bound(path)  # its interfaces go with it


def host_rules(sandbox_ip: str, ports: Sequence[Published]) -> list[Command]:
    """In the node's namespace: its published ports (from outside and from itself) to the
    sandbox."""
    commands = nft_json.nat_table(
        HOST_TABLE, {"prerouting": ("prerouting", -100), "output": ("output", -100)}
    )
    for published in sorted(set(ports)):
        for chain in ("prerouting", "output"):
            commands.append(
                nft_json.rule(
                    HOST_TABLE,
                    chain,
                    nft_json.LOCAL_DADDR,
                    nft_json.dport(published.protocol, published.port),
                    {"dnat": {"addr": sandbox_ip}},
                )
            )
    return commands


def sandbox_rules(backends: Mapping[Published, Sequence[str]]) -> list[Command]:
    """In the sandbox: each published port to a random running task, on its target port
    (the client's address kept: the task routes its answers back here)."""
    commands = nft_json.nat_table(SANDBOX_TABLE, {"prerouting": ("prerouting", -100)})
    for published, addresses in sorted(backends.items()):
        targets = sorted(set(addresses))
        if targets:
            commands.append(
                nft_json.rule(
                    SANDBOX_TABLE,
                    "prerouting",
                    nft_json.dport(published.protocol, published.port),
                    {"dnat": {"addr": nft_json.spread(targets), "port": published.target_port}},
                )
            )
    return commands


def program(sandbox: Path, sandbox_ip: str, backends: Mapping[Published, Sequence[str]]) -> None:
    """Replace both rule sets; call from the node's own namespace."""
    nft.run(host_rules(sandbox_ip, list(backends)), "publish ingress ports on this node")
    call_in_netns(
        sandbox, lambda: nft.run(sandbox_rules(backends), "spread ingress ports over tasks")
    )


def unpublish() -> None:
    """Take the node's published ingress ports away (its table goes)."""
    try:
        table = {"family": nft_json.FAMILY, "name": HOST_TABLE}
        nft.run([{"delete": {"table": table}}], "unpublish ingress ports")
    except nft.NftError as exc:
        if not exc.missing:
            raise


def return_path_rules(ifname: str) -> list[Command]:
    """In a task: connections opened to it through `ifname` (its ingress interface) marked
    with the address of the sandbox that sent them; its answers on them carry the mark."""
    commands = nft_json.table(
        RETURN_TABLE,
        {"prerouting": ("filter", "prerouting", -150), "output": ("route", "output", -150)},
    )
    commands.append(
        nft_json.rule(
            RETURN_TABLE,
            "prerouting",
            nft_json.match(nft_json.IIFNAME, ifname),
            nft_json.match({"ct": {"key": "state"}}, "new", "in"),
            {"mangle": {"key": nft_json.CT_MARK, "value": SENDER_ADDRESS}},
        )
    )
    commands.append(
        nft_json.rule(
            RETURN_TABLE,
            "output",
            nft_json.match({"ct": {"key": "direction"}}, "reply"),
            nft_json.match(nft_json.CT_MARK, 0, "!="),
            {"mangle": {"key": nft_json.META_MARK, "value": nft_json.CT_MARK}},
        )
    )
    return commands


def mark_of(sandbox_ip: str) -> int:
    """The conntrack mark (and routing table) of answers going back to a sandbox: the four
    bytes of its address as the mark statement stores them, in the host's byte order."""
    return int.from_bytes(IPv4Address(sandbox_ip).packed, sys.byteorder)


def program_return_paths(netns: int | Path, ifname: str, sandboxes: Sequence[str]) -> None:
    """In a task's namespace: answers to the routing mesh's connections go back through the
    sandbox each came from (`sandboxes`: every node's address on the ingress network, the
    task's `ifname`). Idempotent: rules of sandboxes no longer listed go."""

    def work() -> None:
        nft.run(return_path_rules(ifname), "route the routing mesh's answers back")
        # The client's address is reachable through the default route, not `ifname`.
        sysctl.write(f"ipv4/conf/{ifname}/rp_filter", "0")
        sysctl.write("ipv4/conf/all/rp_filter", "0")
        _program_routes(ifname, {mark_of(ip): ip for ip in sandboxes})

    call_in_netns(netns, work)


def _program_routes(ifname: str, wanted: Mapping[int, str]) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise NetworkError(f"the routing mesh's interface {ifname} is missing")
        index = found[0]
        present: set[int] = set()
        for entry in ipr.get_rules(family=socket.AF_INET):
            if entry.get_attr("FRA_PRIORITY") != RETURN_RULE_PRIORITY:
                continue
            mark = entry.get_attr("FRA_FWMARK")
            if mark in wanted:
                present.add(mark)
                continue
            ipr.rule("del", priority=RETURN_RULE_PRIORITY, fwmark=mark, table=mark)
            ipr.flush_routes(table=mark)
        for mark, gateway in wanted.items():
            ipr.route("replace", dst="0.0.0.0/0", gateway=gateway, oif=index, table=mark)
            if mark not in present:
                ipr.rule(
                    "add",
                    priority=RETURN_RULE_PRIORITY,
                    fwmark=mark,
                    fwmask=0xFFFFFFFF,
                    table=mark,
                )
