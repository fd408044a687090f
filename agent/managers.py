"""The managers an agent may connect to, with the dispatcher's weights and our own failures.

The dispatcher sends the list (highest weight preferred) at the start of every session and
when it changes; the configured addresses are only the first guess. A manager that failed
us loses half of its weight per failure until it serves a session again, and the one that
failed last is not picked again while another exists.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from agent.errors import ConfigError
from shoal.v1 import types_pb2

DEFAULT_WEIGHT = 10


class Managers:
    def __init__(self, addresses: Sequence[str], rng: random.Random | None = None) -> None:
        if not addresses:
            raise ConfigError("the agent needs at least one manager address")
        for address in addresses:
            _check_address(address)
        self._weights = dict.fromkeys(addresses, DEFAULT_WEIGHT)
        self._failures: dict[str, int] = {}
        self._last_failed = ""
        self._rng = rng or random.Random()

    @property
    def addresses(self) -> list[str]:
        return list(self._weights)

    def update(self, peers: Iterable[types_pb2.WeightedPeer]) -> None:
        """Take the dispatcher's list; an empty list leaves ours as it is."""
        weights = {p.peer.addr: max(p.weight, 1) for p in peers if p.peer.addr}
        if weights:
            self._weights = weights
            self._failures = {a: n for a, n in self._failures.items() if a in weights}

    def select(self) -> str:
        """A manager drawn by weight, never the one that failed last if there is another."""
        candidates = [a for a in self._weights if a != self._last_failed] or list(self._weights)
        weights = [self._weights[a] / 2 ** self._failures.get(a, 0) for a in candidates]
        return self._rng.choices(candidates, weights)[0]

    def failed(self, address: str) -> None:
        self._failures[address] = min(self._failures.get(address, 0) + 1, 16)
        self._last_failed = address

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
        if self._last_failed == address:
            self._last_failed = ""


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"invalid manager address {address!r}: expected host:port")
