"""Virtual-IP load balancing inside a container's network namespace, with nftables (this
kernel has no IPVS; kube-proxy's nftables mode works the same way).

A connection the container opens to a service's virtual IP is sent to one of the service's
running tasks, picked at random per new connection (conntrack keeps a connection on the
task it started with); any port, as the task listens on it. The rules are replaced as a
whole whenever the tasks change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from common.namespaces import call_in_netns
from runtime.network import nft, nft_json
from runtime.network.nft_json import Command

TABLE = "shoal_lb"


def rules(backends: Mapping[str, Sequence[str]]) -> list[Command]:
    """Virtual IP -> task addresses, as one transaction replacing the previous rules; a
    virtual IP without running tasks gets no rule (nothing answers it)."""
    commands = nft_json.nat_table(TABLE, {"output": ("output", -100)})
    for vip, addresses in sorted(backends.items()):
        targets = sorted(set(addresses))
        if targets:
            commands.append(
                nft_json.rule(
                    TABLE,
                    "output",
                    nft_json.match(nft_json.DADDR, vip),
                    {"dnat": {"addr": nft_json.spread(targets)}},
                )
            )
    return commands


def program(netns_fd: int, backends: Mapping[str, Sequence[str]]) -> None:
    """Replace the container's virtual-IP rules (inside the namespace at `netns_fd`)."""
    call_in_netns(netns_fd, lambda: nft.run(rules(backends), "balance virtual IPs"))
