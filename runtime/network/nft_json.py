"""Building blocks of nftables JSON (what `nft -j -f -` reads), shared by every rule set
Shoal writes: the bridge's NAT, the embedded resolver's redirect, virtual IPs and the
routing mesh."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Command = dict[str, Any]
Expr = dict[str, Any]

FAMILY = "ip"
DADDR: Expr = {"payload": {"protocol": "ip", "field": "daddr"}}
SADDR: Expr = {"payload": {"protocol": "ip", "field": "saddr"}}
L4PROTO: Expr = {"meta": {"key": "l4proto"}}
DPORT: Expr = {"payload": {"protocol": "th", "field": "dport"}}
OIFNAME: Expr = {"meta": {"key": "oifname"}}
IIFNAME: Expr = {"meta": {"key": "iifname"}}
CT_MARK: Expr = {"ct": {"key": "mark"}}
META_MARK: Expr = {"meta": {"key": "mark"}}
LOCAL_DADDR: Expr = {
    "match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}
}


def match(left: Any, right: Any, op: str = "==") -> Expr:
    return {"match": {"op": op, "left": left, "right": right}}


def dport(protocol: str, port: int) -> Expr:
    """A match on the destination port of `protocol` (tcp, udp) packets."""
    return match({"payload": {"protocol": protocol, "field": "dport"}}, port)


def table(table: str, chains: Mapping[str, tuple[str, str, int]]) -> list[Command]:
    """Table `table` with base chains name -> (type, hook, priority), each emptied: the rules
    added after these commands, in the same transaction, replace whatever the chains held."""
    commands: list[Command] = [{"add": {"table": {"family": FAMILY, "name": table}}}]
    for name, (kind, hook, prio) in chains.items():
        chain = {"family": FAMILY, "table": table, "name": name}
        commands.append({"add": {"chain": {**chain, "type": kind, "hook": hook, "prio": prio}}})
        commands.append({"flush": {"chain": chain}})
    return commands


def nat_table(table_name: str, chains: Mapping[str, tuple[str, int]]) -> list[Command]:
    """`table` with nat chains name -> (hook, priority)."""
    return table(table_name, {name: ("nat", hook, prio) for name, (hook, prio) in chains.items()})


def rule(table: str, chain: str, *expr: Expr) -> Command:
    return {"add": {"rule": {"family": FAMILY, "table": table, "chain": chain, "expr": list(expr)}}}


def spread(targets: Sequence[str]) -> Expr:
    """A DNAT address picking one of `targets` at random per new connection."""
    choice = {"numgen": {"mode": "random", "mod": len(targets), "offset": 0}}
    mapping = {"set": [[index, address] for index, address in enumerate(targets)]}
    return {"map": {"key": choice, "data": mapping}}
