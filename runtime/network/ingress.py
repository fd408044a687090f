"""The routing mesh's end on one node: ports published in ingress mode answer on every
node and reach a running task of their service on any node.

Each node keeps one namespace for it, the ingress sandbox (as Docker's ingress-sbox): on the
ingress overlay network with the node's own address there (eth0), and on the node's bridge
(eth1). A connection to a published port of the node is sent to the sandbox (DNAT in the
node's namespace), which spreads it over the service's running tasks on the ingress network
(DNAT to a random task, with the target port) and masquerades it, so the answer comes back
the same way. Both rule sets are replaced as a whole when the published ports or the tasks
change. The client's own address is not kept yet (as in Docker).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from common import libc
from common.namespaces import call_in_netns, create_bound, is_bound, remove_bound
from runtime.network import nft, nft_json, sysctl
from runtime.network.nft_json import Command

SANDBOX_ID = "ingress-sbox"  # its name as a container of the overlay and of the bridge
HOST_TABLE = "shoal_mesh"
SANDBOX_TABLE = "shoal_ingress"
OVERLAY_IFNAME = "eth0"
BRIDGE_IFNAME = "eth1"


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
    """In the sandbox: each published port to a random running task, on its target port;
    what leaves for the ingress network masqueraded (answers come back here)."""
    commands = nft_json.nat_table(
        SANDBOX_TABLE, {"prerouting": ("prerouting", -100), "postrouting": ("postrouting", 100)}
    )
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
    commands.append(
        nft_json.rule(
            SANDBOX_TABLE,
            "postrouting",
            nft_json.match(nft_json.OIFNAME, OVERLAY_IFNAME),
            {"masquerade": None},
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
