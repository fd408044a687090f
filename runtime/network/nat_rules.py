"""Shoal's nftables ruleset for the bridge network, as libnftables JSON commands.

One table of our own, `ip shoal`, so nothing else's rules are touched:

- A published port is a pair of map elements, one giving the container's address and one
  its port, both keyed by (protocol . host port) in the `any_*` maps for every local
  address, or by (host address . protocol . host port) in the `ip_*` maps for
  `-p HOST_IP:...`. Each element carries its container's id as a comment. Adding or deleting
  a container's elements is one atomic transaction, and the lookup does not grow with the
  number of containers. (Pairs, because nft 1.0.6 crashes on a JSON map whose data is a
  concatenation such as `ipv4_addr . inet_service`.)
- The `publish` chain is entered for packets to a local address from other machines
  (prerouting) and from this machine's own processes (output, 127.0.0.1 included).
- Postrouting masquerades the subnet's traffic leaving by any other link (egress), and
  DNAT'ed traffic entering the bridge from a loopback or bridge address: replies to 127.0.0.1
  and hairpin connections (container -> published port -> container) must come back through
  this host's conntrack, not straight over the bridge. Other machines' traffic keeps its
  source address.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any, NamedTuple

from runtime.network.nft_json import (
    DADDR,
    DPORT,
    FAMILY,
    L4PROTO,
    LOCAL_DADDR,
    OIFNAME,
    SADDR,
    Command,
    Expr,
    match,
)
from runtime.network.ports import PortMapping

TABLE = "shoal"
PUBLISH_CHAIN = "publish"

_LOOPBACK = IPv4Network("127.0.0.0/8")


class MapPair(NamedTuple):
    """Two maps with the same key: one to the container's address, one to its port."""

    prefix: str
    key_types: tuple[str, ...]
    key_exprs: tuple[Expr, ...]

    @property
    def addr_map(self) -> str:
        return f"{self.prefix}_addr"

    @property
    def port_map(self) -> str:
        return f"{self.prefix}_port"


ANY_ADDRESS = MapPair("any", ("inet_proto", "inet_service"), (L4PROTO, DPORT))
ONE_ADDRESS = MapPair("ip", ("ipv4_addr", "inet_proto", "inet_service"), (DADDR, L4PROTO, DPORT))
MAP_PAIRS = (ONE_ADDRESS, ANY_ADDRESS)  # lookup order: a specific address first
MAP_NAMES = frozenset(name for p in MAP_PAIRS for name in (p.addr_map, p.port_map))


def _obj(kind: str, **fields: Any) -> Command:
    return {kind: {"family": FAMILY, "table": TABLE, **fields}}


def _prefix(network: IPv4Network) -> Expr:
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


def _rule(chain: str, *expr: Expr) -> Command:
    return {"add": _obj("rule", chain=chain, expr=list(expr))}


def _lookup(pair: MapPair, map_name: str) -> Expr:
    return {"map": {"key": {"concat": list(pair.key_exprs)}, "data": f"@{map_name}"}}


def _dnat(pair: MapPair) -> Expr:
    return {"dnat": {"addr": _lookup(pair, pair.addr_map), "port": _lookup(pair, pair.port_map)}}


def base_ruleset(subnet: IPv4Network, bridge: str) -> list[Command]:
    """The table, maps, chains and fixed rules; applying it again is harmless (chains are
    flushed and refilled in the same transaction, map elements are kept)."""
    hooks = {"prerouting": -100, "output": -100, "postrouting": 100}
    commands: list[Command] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    for pair in MAP_PAIRS:
        for name, data in ((pair.addr_map, "ipv4_addr"), (pair.port_map, "inet_service")):
            commands.append({"add": _obj("map", name=name, type=list(pair.key_types), map=data)})
    commands.append({"add": _obj("chain", name=PUBLISH_CHAIN)})
    for hook, priority in hooks.items():
        base = {"type": "nat", "hook": hook, "prio": priority, "policy": "accept"}
        commands.append({"add": _obj("chain", name=hook, **base)})
    for chain in (*hooks, PUBLISH_CHAIN):
        commands.append({"flush": _obj("chain", name=chain)})
    commands += [
        _rule("prerouting", LOCAL_DADDR, {"jump": {"target": PUBLISH_CHAIN}}),
        _rule("output", LOCAL_DADDR, {"jump": {"target": PUBLISH_CHAIN}}),
        *(_rule(PUBLISH_CHAIN, _dnat(pair)) for pair in MAP_PAIRS),
        _rule(
            "postrouting",
            match(SADDR, _prefix(subnet)),
            match(OIFNAME, bridge, op="!="),
            {"masquerade": None},
        ),
        _rule(
            "postrouting",
            match(OIFNAME, bridge),
            match({"ct": {"key": "status"}}, "dnat", op="in"),
            match(SADDR, {"set": [_prefix(_LOOPBACK), _prefix(subnet)]}),
            {"masquerade": None},
        ),
    ]
    return commands


def _pair_of(port: PortMapping) -> MapPair:
    return ONE_ADDRESS if port.host_ip else ANY_ADDRESS


def _key(port: PortMapping) -> Expr:
    parts: list[str | int] = [port.protocol, port.host_port]
    if port.host_ip:
        parts.insert(0, port.host_ip)
    return {"concat": parts}


def _elements(ports: Sequence[PortMapping], to_map: Any) -> list[tuple[str, list[Any]]]:
    """(map name, elements) for every map `ports` touch, in a stable order."""
    grouped: dict[str, list[Any]] = {}
    for port in ports:
        pair = _pair_of(port)
        for name, element in to_map(pair, port):
            grouped.setdefault(name, []).append(element)
    return sorted(grouped.items())


def publish(container_id: str, ip: IPv4Address, ports: Sequence[PortMapping]) -> list[Command]:
    """Send each port's host side to `ip`:container port, tagged with `container_id`."""

    def entries(pair: MapPair, port: PortMapping) -> list[tuple[str, Any]]:
        key = {"elem": {"val": _key(port), "comment": container_id}}
        return [(pair.addr_map, [key, str(ip)]), (pair.port_map, [key, port.container_port])]

    return [
        {"add": _obj("element", name=name, elem=elements)}
        for name, elements in _elements(ports, entries)
    ]


def unpublish(ports: Sequence[PortMapping]) -> list[Command]:
    """Delete the elements of `ports` (each must exist, or the whole transaction fails)."""

    def entries(pair: MapPair, port: PortMapping) -> list[tuple[str, Any]]:
        return [(pair.addr_map, _key(port)), (pair.port_map, _key(port))]

    return [
        {"delete": _obj("element", name=name, elem=elements)}
        for name, elements in _elements(ports, entries)
    ]


def unpublish_owned(listing: Sequence[dict[str, Any]], container_id: str) -> list[Command]:
    """Delete every map element tagged with `container_id` in a `nft -j list table` listing:
    the fallback when a container's record and the ruleset disagree."""
    commands: list[Command] = []
    for obj in listing:
        found = obj.get("map")
        if not isinstance(found, dict) or found.get("name") not in MAP_NAMES:
            continue
        keys = []
        for pair in found.get("elem", []):
            key = pair[0] if isinstance(pair, list) and pair else pair
            tagged = key.get("elem") if isinstance(key, dict) else None
            if isinstance(tagged, dict) and tagged.get("comment") == container_id:
                keys.append(tagged["val"])
        if keys:
            commands.append({"delete": _obj("element", name=found["name"], elem=keys)})
    return commands


def delete_table() -> list[Command]:
    return [{"delete": {"table": {"family": FAMILY, "name": TABLE}}}]


def document(commands: Sequence[Command]) -> str:
    """The JSON text `nft -j -f -` reads."""
    return json.dumps({"nftables": list(commands)})
