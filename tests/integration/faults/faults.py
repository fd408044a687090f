"""Faults injected into a lab of real swarmd managers: packet loss between machines (all
of it or a share, one way or both: nftables in the sender's network namespace, `numgen` for
a share, since this kernel has no netem), kill -9, a flood of connections to a raft port.

Every rule lives in one table of its own per machine, so healing is deleting that table.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from common import namespaces
from deploy.netns_driver import Machine
from runtime.network import nft
from runtime.network.nft_json import DADDR, FAMILY, Command, match, rule, table

TABLE = "shoal_faults"


def _in(machine: Machine, commands: list[Command], what: str) -> None:
    namespaces.call_in_netns(machine.netns, lambda: nft.run(commands, what))


def drop(sender: Machine, receiver: Machine, percent: int = 100) -> None:
    """Drop `percent` of the packets `sender` sends to `receiver` (one way)."""
    expression = [match(DADDR, receiver.record.ip)]
    if percent < 100:
        share = {"numgen": {"mode": "random", "mod": 100, "offset": 0}}
        expression.append(match(share, percent, "<"))
    commands = table(TABLE, {"out": ("filter", "output", 0)})[:1]
    commands += [
        {"add": {"chain": {
            "family": FAMILY, "table": TABLE, "name": "out",
            "type": "filter", "hook": "output", "prio": 0,
        }}},
        rule(TABLE, "out", *expression, {"drop": None}),
    ]  # fmt: skip
    _in(sender, commands, f"drop {percent}% from {sender.name} to {receiver.name}")


def partition(one: Machine, other: Machine, percent: int = 100) -> None:
    """Both ways."""
    drop(one, other, percent)
    drop(other, one, percent)


def isolate(machine: Machine, others: list[Machine]) -> None:
    for other in others:
        if other is not machine:
            partition(machine, other)


def heal(machines: list[Machine]) -> None:
    for machine in machines:
        with contextlib.suppress(nft.NftError):  # no fault there
            _in(machine, [{"delete": {"table": {"family": FAMILY, "name": TABLE}}}], "heal")


@contextlib.contextmanager
def flood(source: Machine, address: str, connections: int) -> Iterator[threading.Event]:
    """Open `connections` TCP connections from `source` to `address` and keep sending them
    junk (a pickled-looking frame, then random bytes) until the block ends."""
    host, _, port = address.rpartition(":")
    stop = threading.Event()

    def connect() -> socket.socket:
        sock = socket.socket()
        sock.settimeout(2)
        sock.connect((host, int(port)))
        return sock

    sockets: list[socket.socket] = []
    for _ in range(connections):
        with contextlib.suppress(OSError):
            sockets.append(namespaces.call_in_netns(source.netns, connect))
    junk = b"\x80\x04\x95" + bytes(range(256)) * 64  # a pickle's header, then garbage

    def pump() -> None:
        while not stop.is_set() and sockets:
            for sock in list(sockets):
                try:
                    sock.send(junk)
                except OSError:
                    sockets.remove(sock)
            stop.wait(0.01)

    thread = threading.Thread(target=pump, name="raft port flood", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=10)
        for sock in sockets:
            sock.close()
