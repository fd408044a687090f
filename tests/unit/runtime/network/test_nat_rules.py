"""The nft JSON documents: what the bridge network asks nft to do."""

from __future__ import annotations

import json
import sys
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from runtime.network import ingress, ipam, nat_rules, parse_port

SUBNET = IPv4Network("172.18.0.0/16")


def _adds(commands: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c["add"][kind] for c in commands if kind in c.get("add", {})]


def test_base_ruleset_declares_our_table_maps_and_hooked_chains() -> None:
    commands = nat_rules.base_ruleset(SUBNET, "shoal0")
    assert commands[0] == {"add": {"table": {"family": "ip", "name": "shoal"}}}
    maps = {m["name"]: (m["type"], m["map"]) for m in _adds(commands, "map")}
    assert maps == {
        "any_addr": (["inet_proto", "inet_service"], "ipv4_addr"),
        "any_port": (["inet_proto", "inet_service"], "inet_service"),
        "ip_addr": (["ipv4_addr", "inet_proto", "inet_service"], "ipv4_addr"),
        "ip_port": (["ipv4_addr", "inet_proto", "inet_service"], "inet_service"),
    }
    hooked = {c["name"]: (c["hook"], c["prio"]) for c in _adds(commands, "chain") if "hook" in c}
    assert hooked == {
        "prerouting": ("prerouting", -100),
        "output": ("output", -100),
        "postrouting": ("postrouting", 100),
    }
    assert all(c["table"] == "shoal" and c["family"] == "ip" for c in _adds(commands, "chain"))


def test_base_ruleset_can_be_applied_again() -> None:
    """Every chain is flushed before its rules are added, in the same document."""
    commands = nat_rules.base_ruleset(SUBNET, "shoal0")
    flushed = [i for i, c in enumerate(commands) if "flush" in c]
    rules = [i for i, c in enumerate(commands) if "rule" in c.get("add", {})]
    chains = {c["flush"]["chain"]["name"] for c in commands if "flush" in c}
    assert chains == {"prerouting", "output", "postrouting", "publish"}
    assert max(flushed) < min(rules)
    assert not any("elem" in m for m in _adds(commands, "map"))  # published ports survive


def test_base_rules_send_local_destinations_to_the_published_maps() -> None:
    rules = _adds(nat_rules.base_ruleset(SUBNET, "shoal0"), "rule")
    local = {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}},
                       "right": "local"}}  # fmt: skip
    for hook in ("prerouting", "output"):
        (rule,) = [r for r in rules if r["chain"] == hook]
        assert rule["expr"] == [local, {"jump": {"target": "publish"}}]
    dnats = [r["expr"][0]["dnat"] for r in rules if r["chain"] == "publish"]
    assert [(d["addr"]["map"]["data"], d["port"]["map"]["data"]) for d in dnats] == [
        ("@ip_addr", "@ip_port"),  # a specific host address wins over the wildcard
        ("@any_addr", "@any_port"),
    ]
    assert dnats[0]["addr"]["map"]["key"]["concat"][0] == {
        "payload": {"protocol": "ip", "field": "daddr"}
    }


def test_masquerade_rules_use_the_subnet_and_bridge() -> None:
    rules = _adds(nat_rules.base_ruleset(IPv4Network("10.200.0.0/24"), "br-x"), "rule")
    egress, local = [r["expr"] for r in rules if r["chain"] == "postrouting"]
    assert egress == [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                   "right": {"prefix": {"addr": "10.200.0.0", "len": 24}}}},
        {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "br-x"}},
        {"masquerade": None},
    ]  # fmt: skip
    assert {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}} in local
    sources = local[2]["match"]["right"]["set"]
    assert sources == [
        {"prefix": {"addr": "127.0.0.0", "len": 8}},
        {"prefix": {"addr": "10.200.0.0", "len": 24}},
    ]
    assert local[-1] == {"masquerade": None}


def test_publish_adds_tagged_address_and_port_elements() -> None:
    ports = [parse_port("8080:80"), parse_port("127.0.0.1:5353:53/udp")]
    commands = nat_rules.publish("c1", IPv4Address("172.18.0.7"), ports)
    elements = {c["add"]["element"]["name"]: c["add"]["element"]["elem"] for c in commands}
    tag_any = {"elem": {"val": {"concat": ["tcp", 8080]}, "comment": "c1"}}
    tag_ip = {"elem": {"val": {"concat": ["127.0.0.1", "udp", 5353]}, "comment": "c1"}}
    assert elements == {
        "any_addr": [[tag_any, "172.18.0.7"]],
        "any_port": [[tag_any, 80]],
        "ip_addr": [[tag_ip, "172.18.0.7"]],
        "ip_port": [[tag_ip, 53]],
    }
    assert all(c["add"]["element"]["table"] == "shoal" for c in commands)


def test_unpublish_deletes_the_same_keys() -> None:
    ports = [parse_port("8080:80"), parse_port("8081:81/udp")]
    commands = nat_rules.unpublish(ports)
    keys = {c["delete"]["element"]["name"]: c["delete"]["element"]["elem"] for c in commands}
    expected = [{"concat": ["tcp", 8080]}, {"concat": ["udp", 8081]}]
    assert keys == {"any_addr": expected, "any_port": expected}


def test_unpublish_owned_finds_a_containers_elements_in_a_listing() -> None:
    """The listing as nft 1.0.6 prints it (`nft -j list table ip shoal`)."""

    def elem(val: list[Any], comment: str, data: Any) -> list[Any]:
        return [{"elem": {"val": {"concat": val}, "comment": comment}}, data]

    listing: list[dict[str, Any]] = [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "ip", "name": "shoal", "handle": 1}},
        {"map": {"family": "ip", "table": "shoal", "name": "any_addr", "handle": 2,
                 "type": ["inet_proto", "inet_service"], "map": "ipv4_addr",
                 "elem": [elem(["tcp", 8080], "c1", "172.18.0.2"),
                          elem(["tcp", 9090], "c2", "172.18.0.3")]}},
        {"map": {"family": "ip", "table": "shoal", "name": "ip_port", "handle": 3,
                 "type": ["ipv4_addr", "inet_proto", "inet_service"], "map": "inet_service",
                 "elem": [elem(["127.0.0.1", "udp", 53], "c1", 5353)]}},
        {"map": {"family": "ip", "table": "shoal", "name": "any_port", "handle": 4,
                 "type": ["inet_proto", "inet_service"], "map": "inet_service"}},
        {"map": {"family": "ip", "table": "shoal", "name": "not_ours", "handle": 5,
                 "type": ["inet_service"], "map": "inet_service",
                 "elem": [elem(["tcp", 1], "c1", 1)]}},
    ]  # fmt: skip
    commands = nat_rules.unpublish_owned(listing, "c1")
    assert commands == [
        {"delete": {"element": {"family": "ip", "table": "shoal", "name": "any_addr",
                                "elem": [{"concat": ["tcp", 8080]}]}}},
        {"delete": {"element": {"family": "ip", "table": "shoal", "name": "ip_port",
                                "elem": [{"concat": ["127.0.0.1", "udp", 53]}]}}},
    ]  # fmt: skip
    assert nat_rules.unpublish_owned(listing, "c3") == []


def test_document_is_the_json_nft_reads() -> None:
    commands = nat_rules.delete_table()
    assert json.loads(nat_rules.document(commands)) == {
        "nftables": [{"delete": {"table": {"family": "ip", "name": "shoal"}}}]
    }


def test_the_routing_mesh_keeps_the_client_address_and_marks_its_connections() -> None:
    published = ingress.Published("tcp", 8080, 80)
    sandbox = json.dumps(ingress.sandbox_rules({published: ["10.255.0.7", "10.255.0.5"]}))
    assert "masquerade" not in sandbox and "snat" not in sandbox  # the task sees the client
    task = ingress.return_path_rules("eth1")
    marking = [c["add"]["rule"] for c in task if "rule" in c.get("add", {})]
    assert [r["chain"] for r in marking] == ["prerouting", "output"]
    assert {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth1"}} in (
        marking[0]["expr"]
    )
    # The sender's address sits in the last four bytes of its MAC (02:42 + address).
    assert ingress.SENDER_ADDRESS["payload"] == {"base": "ll", "offset": 64, "len": 32}
    mac = ipam.mac_for(IPv4Address("10.255.0.3"))
    assert bytes.fromhex(mac.replace(":", ""))[2:] == IPv4Address("10.255.0.3").packed
    # The mark statement copies those bytes into a number of the host's byte order.
    assert ingress.mark_of("10.255.0.3").to_bytes(4, sys.byteorder) == bytes([10, 255, 0, 3])
