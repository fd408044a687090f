"""Forgetting UDP flows to published ports, so a new port mapping takes effect at once.

Conntrack keeps a UDP flow's first verdict for as long as packets keep coming: datagrams
that arrived before a port was published (not translated) or while it pointed at a removed
container (translated to a dead address) would go on being handled that way, and a DNS
server behind `-p 53:53/udp` would never see its clients (Docker's moby#8795). TCP needs
nothing: a new connection gets a new entry. Through pyroute2's conntrack netlink client, in
the calling thread's network namespace.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

from runtime.network.errors import NetworkError
from runtime.network.ports import PortMapping


def forget_udp_flows(ports: Sequence[PortMapping]) -> int:
    """Delete conntrack entries of UDP traffic to the host side of `ports`; returns how many."""
    udp = [p for p in ports if p.protocol == "udp"]
    if not udp:
        return 0
    # pyroute2's conntrack client pulls in its whole package: imported for UDP ports only.
    from pyroute2 import Conntrack
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    deleted = 0
    try:
        with Conntrack() as ct:
            # Read the whole dump first: pyroute2's sync wrapper cannot interleave requests.
            flows = [
                entry
                for entry in ct.dump_entries(tuple_orig=NFCTAttrTuple(proto=socket.IPPROTO_UDP))
                if any(
                    p.host_port == entry.tuple_orig.dport
                    and p.host_ip in ("", entry.tuple_orig.daddr)
                    for p in udp
                )
            ]
            for entry in flows:
                try:
                    ct.delete(entry)
                    deleted += 1
                except NetlinkError as exc:
                    if exc.code != errno.ENOENT:  # gone meanwhile: fine
                        raise
    except NetlinkError as exc:
        raise NetworkError(f"cannot clear UDP conntrack entries: {exc}") from None
    return deleted
