"""The embedded DNS resolver of containers on overlay networks, as Docker's 127.0.0.11.

Whoever runs the containers (the node's agent) answers for each one from sockets it opens
inside the container's network namespace, so no process runs per container: a UDP and a
TCP socket on 127.0.0.11 at a port of the kernel's choosing, and an nftables rule in the
container's namespace that sends 127.0.0.11:53 there (a server of the container's own may
still listen on port 53). Queries are answered from the container's records (the names on
the networks it is on); other names are forwarded to the node's own resolvers.
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from common.namespaces import call_in_netns
from runtime.network import nft, nft_json
from runtime.network.nft_json import Command

RESOLVER_IP = "127.0.0.11"
DNS_PORT = 53
TTL = 0  # answers follow tasks as they come and go: nothing may cache them
TABLE = "shoal_dns"
BIND_ATTEMPTS = 20  # a UDP port whose TCP twin is taken is tried again with another


class Records:
    """The names a container can resolve: lower-case name -> its IPv4 addresses."""

    def __init__(self, names: Mapping[str, Sequence[str]]) -> None:
        self._names = {name.lower().rstrip("."): list(addrs) for name, addrs in names.items()}

    def lookup(self, name: str) -> list[str] | None:
        """Addresses of `name` in a random order (round robin), or None: not a name of
        these networks."""
        found = self._names.get(name.lower().rstrip("."))
        if found is None:
            return None
        return random.sample(found, len(found))


def respond(query: bytes, records: Records) -> bytes | None:
    """The answer to a DNS query in wire format from `records`; None when the name is not
    one of theirs (forward it). A malformed query gets FORMERR when it can be answered at
    all, else nothing."""
    try:
        message = dns.message.from_wire(query)
    except dns.exception.DNSException:
        return _formerr(query)
    if len(message.question) != 1:
        response = dns.message.make_response(message)
        response.set_rcode(dns.rcode.FORMERR)
        return bytes(response.to_wire())
    question = message.question[0]
    addresses = records.lookup(question.name.to_text(omit_final_dot=True))
    if addresses is None:
        return None
    response = dns.message.make_response(message)
    response.flags |= dns.flags.AA | dns.flags.RA
    if question.rdtype == dns.rdatatype.A and question.rdclass == dns.rdataclass.IN:
        response.answer.append(
            dns.rrset.from_text_list(
                question.name, TTL, dns.rdataclass.IN, dns.rdatatype.A, addresses
            )
        )
    # Other types of a known name (AAAA above all): no data, not a forward that would leak
    # the name to the node's resolvers and wait on them.
    return bytes(response.to_wire())


def _formerr(query: bytes) -> bytes | None:
    if len(query) < 12:
        return None
    header = bytearray(query[:12])
    header[2] = 0x80 | (header[2] & 0x01)  # QR, and the query's RD bit
    header[3] = dns.rcode.FORMERR
    header[4:12] = bytes(8)  # no sections
    return bytes(header)


def servfail(query: bytes) -> bytes | None:
    """The SERVFAIL answer to a query a forward could not answer."""
    try:
        message = dns.message.from_wire(query)
    except dns.exception.DNSException:
        return None
    response = dns.message.make_response(message)
    response.set_rcode(dns.rcode.SERVFAIL)
    return bytes(response.to_wire())


def node_resolvers(path: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The node's own name servers (loopback ones included: the agent asks from the node's
    namespace, where they answer)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [parts[1] for line in lines if (parts := line.split()) and parts[0] == "nameserver"][:3]


def open_sockets(netns_fd: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on 127.0.0.11, one port, inside the namespace at `netns_fd`
    (listening, non-blocking)."""

    def work() -> tuple[socket.socket, socket.socket]:
        for _ in range(BIND_ATTEMPTS):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((RESOLVER_IP, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.bind((RESOLVER_IP, port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(64)
            for sock in (udp, tcp):
                sock.setblocking(False)
            return udp, tcp
        raise OSError(f"no port free for both UDP and TCP on {RESOLVER_IP}")

    return call_in_netns(netns_fd, work)


def redirect_rules(port: int) -> list[Command]:
    """The container's 127.0.0.11:53 (UDP and TCP) sent to `port`, replacing any earlier
    redirect (an agent that restarted opens new sockets)."""
    return [
        *nft_json.nat_table(TABLE, {"output": ("output", -100)}),
        *(
            nft_json.rule(
                TABLE,
                "output",
                nft_json.match(nft_json.DADDR, RESOLVER_IP),
                nft_json.dport(protocol, DNS_PORT),
                {"dnat": {"addr": RESOLVER_IP, "port": port}},
            )
            for protocol in ("udp", "tcp")
        ),
    ]


def redirect(netns_fd: int, port: int) -> None:
    """Install the redirect inside the container's namespace."""
    call_in_netns(netns_fd, lambda: nft.run(redirect_rules(port), "redirect DNS to 127.0.0.11"))


def close_all(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()
