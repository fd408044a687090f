"""Settings of one manager's raft node, checked before anything starts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from manager.raft.errors import RaftConfigError

MIN_KEY_BYTES = 16


def parse_address(value: str, what: str) -> tuple[str, int]:
    """`host:port` with an IP literal host; the port 1-65535."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RaftConfigError(f"{what} {value!r} is not host:port")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise RaftConfigError(f"{what} {value!r}: {host!r} is not an IP address") from None
    number = int(port)
    if not 0 < number < 65536:
        raise RaftConfigError(f"{what} {value!r}: port {number} is out of range")
    if ip.is_unspecified:
        raise RaftConfigError(f"{what} {value!r}: raft binds to one address, never to all ({host})")
    return str(ip), number


@dataclass(frozen=True)
class RaftConfig:
    # host:port this manager binds (only that address) and the others reach it at.
    address: str
    # host:port of the other members. The current membership: after a restart it wins over
    # the list stored in a snapshot.
    peers: tuple[str, ...]
    data_dir: Path
    # The cluster raft key (pysyncobj `password`): authenticates and encrypts the raft port.
    key: bytes = field(repr=False)
    # A new member: it waits to hear from the leader instead of starting elections.
    joining: bool = False
    election_timeout: tuple[float, float] = (0.4, 1.0)
    heartbeat_period: float = 0.1
    # A leader that hears from no majority for this long steps down.
    leader_fallback_timeout: float = 3.0
    connection_retry_time: float = 0.5
    connection_timeout: float = 3.5
    compaction_min_entries: int = 5000
    compaction_min_seconds: float = 300.0
    snapshot_chunk_bytes: int = 1 << 20
    # Largest store transaction (as etcd's default request limit). pysyncobj encrypts and
    # compresses each message in its tick thread, so messages stay a few MiB at most.
    max_proposal_bytes: int = 3 << 19
    proposal_timeout: float = 10.0
    tick_period: float = 0.05

    def validate(self) -> None:
        parse_address(self.address, "raft address")
        for peer in self.peers:
            parse_address(peer, "raft peer")
        if self.address in self.peers:
            raise RaftConfigError(f"raft peers list this manager's own address {self.address}")
        if len(set(self.peers)) != len(self.peers):
            raise RaftConfigError(f"raft peers list an address twice: {list(self.peers)}")
        if not isinstance(self.key, bytes) or len(self.key) < MIN_KEY_BYTES:
            raise RaftConfigError(
                f"raft key must be at least {MIN_KEY_BYTES} bytes (the cluster raft key)"
            )
        low, high = self.election_timeout
        if not 0 < low < high:
            raise RaftConfigError(f"election_timeout {self.election_timeout} is not (low, high)")
        if not 0 < self.heartbeat_period * 3 < low:
            raise RaftConfigError(
                f"heartbeat_period {self.heartbeat_period} must be under a third of the "
                f"minimum election timeout {low}"
            )
        if self.leader_fallback_timeout <= self.heartbeat_period:
            raise RaftConfigError("leader_fallback_timeout must exceed heartbeat_period")
        if self.connection_timeout < high:
            raise RaftConfigError("connection_timeout must be at least the election timeout")
        if self.compaction_min_entries < 2:
            raise RaftConfigError("compaction_min_entries must be at least 2")
        for name in ("snapshot_chunk_bytes", "max_proposal_bytes"):
            if getattr(self, name) < 1024:
                raise RaftConfigError(f"{name} must be at least 1024")
        for name in ("compaction_min_seconds", "proposal_timeout", "tick_period"):
            if getattr(self, name) <= 0:
                raise RaftConfigError(f"{name} must be positive")
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise RaftConfigError(f"raft data_dir {self.data_dir} is not a directory")
