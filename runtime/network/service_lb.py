"""Virtual-IP load balancing inside a container's network namespace, with nftables (this
kernel has no IPVS; kube-proxy's nftables mode works the same way).

A connection the container opens to a service's virtual IP is sent to one of the service's
running tasks, picked at random per new connection (conntrack keeps a connection on the
task it started with); any port, as the task listens on it. The rules are replaced as a
whole whenever the tasks change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from common.namespaces import call_in_netns
from runtime.network import nft
from runtime.network.nat_rules import Command

TABLE = "shoal_lb"
FAMILY = "ip"


def spread(targets: Sequence[str]) -> dict[str, Any]:
    """The DNAT address expression picking one of `targets` at random per connection."""
    choice = {"numgen": {"mode": "random", "mod": len(targets), "offset": 0}}
    mapping = {"set": [[index, address] for index, address in enumerate(targets)]}
    return {"map": {"key": choice, "data": mapping}}


def rules(backends: Mapping[str, Sequence[str]]) -> list[Command]:
    """Virtual IP -> task addresses, as one transaction replacing the previous rules; a
    virtual IP without running tasks gets no rule (nothing answers it)."""
    chain = {"family": FAMILY, "table": TABLE, "name": "output"}
    commands: list[Command] = [
        {"add": {"table": {"family": FAMILY, "name": TABLE}}},
        {"add": {"chain": {**chain, "type": "nat", "hook": "output", "prio": -100}}},
        {"flush": {"chain": chain}},
    ]
    for vip, addresses in sorted(backends.items()):
        targets = sorted(set(addresses))
        if not targets:
            continue
        commands.append(
            {
                "add": {
                    "rule": {
                        **{k: v for k, v in chain.items() if k != "name"},
                        "chain": "output",
                        "expr": [
                            {
                                "match": {
                                    "op": "==",
                                    "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                                    "right": vip,
                                }
                            },
                            {"dnat": {"addr": spread(targets)}},
                        ],
                    }
                }
            }
        )
    return commands


def program(netns_fd: int, backends: Mapping[str, Sequence[str]]) -> None:
    """Replace the container's virtual-IP rules (inside the namespace at `netns_fd`)."""
    call_in_netns(netns_fd, lambda: nft.run(rules(backends), "balance virtual IPs"))
