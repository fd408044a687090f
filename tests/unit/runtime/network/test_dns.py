"""The embedded resolver's answers, and the nft rules around it (no sockets, no kernel)."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from runtime.network import dns as embedded
from runtime.network import service_lb

RECORDS = embedded.Records({"web": ["10.0.0.100"], "tasks.web": ["10.0.0.3", "10.0.0.4"]})


def ask(name: str, rdtype: str = "A") -> dns.message.Message | None:
    query = dns.message.make_query(name, rdtype)
    answer = embedded.respond(query.to_wire(), RECORDS)
    return None if answer is None else dns.message.from_wire(answer)


def addresses(message: dns.message.Message) -> list[str]:
    return sorted(r.address for rrset in message.answer for r in rrset)


def test_known_names_are_answered_with_every_address_and_no_ttl() -> None:
    answer = ask("tasks.web")
    assert answer is not None and answer.rcode() == dns.rcode.NOERROR
    assert addresses(answer) == ["10.0.0.3", "10.0.0.4"]
    assert answer.answer[0].ttl == 0 and answer.flags & dns.flags.AA
    upper = ask("WEB.")  # case and the final dot do not matter
    assert upper is not None and addresses(upper) == ["10.0.0.100"]


def test_other_types_of_a_known_name_have_no_data_and_unknown_names_are_forwarded() -> None:
    aaaa = ask("web", "AAAA")
    assert aaaa is not None and aaaa.rcode() == dns.rcode.NOERROR and aaaa.answer == []
    assert ask("example.org") is None


def test_bad_queries_get_formerr_or_nothing() -> None:
    query = dns.message.make_query("web", "A")
    wire = bytearray(query.to_wire())
    truncated = bytes(wire[:20])
    answer = embedded.respond(truncated, RECORDS)
    assert answer is not None
    parsed = dns.message.from_wire(answer)
    assert parsed.rcode() == dns.rcode.FORMERR and parsed.id == query.id
    assert embedded.respond(b"\x00\x01", RECORDS) is None


def test_round_robin_shuffles_but_keeps_every_address() -> None:
    records = embedded.Records({"tasks.db": [f"10.0.0.{n}" for n in range(2, 12)]})
    orders = {tuple(records.lookup("tasks.db") or []) for _ in range(50)}
    assert len(orders) > 1 and all(sorted(o) == sorted(next(iter(orders))) for o in orders)


def test_the_dns_redirect_replaces_any_earlier_one() -> None:
    commands = embedded.redirect_rules(40001)
    assert {
        "flush": {"chain": {"family": "ip", "table": "shoal_dns", "name": "output"}}
    } in commands
    dnats = [c["add"]["rule"]["expr"][-1] for c in commands if "rule" in c.get("add", {})]
    assert dnats == [{"dnat": {"addr": "127.0.0.11", "port": 40001}}] * 2


def test_virtual_ips_spread_over_their_running_tasks() -> None:
    commands = service_lb.rules({"10.0.0.100": ["10.0.0.4", "10.0.0.3"], "10.0.1.100": []})
    rules = [c["add"]["rule"] for c in commands if "rule" in c.get("add", {})]
    assert len(rules) == 1  # a virtual IP without tasks gets no rule
    match, dnat = rules[0]["expr"]
    assert match["match"]["right"] == "10.0.0.100"
    mapping = dnat["dnat"]["addr"]["map"]
    assert mapping["key"]["numgen"]["mod"] == 2
    assert mapping["data"]["set"] == [[0, "10.0.0.3"], [1, "10.0.0.4"]]
