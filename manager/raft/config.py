"""Settings of one manager's raft node, checked before anything starts."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from manager.raft.errors import RaftConfigError

# A snapshot piece (peer_transport.SNAPSHOT_CHUNK_BYTES) and room for its header.
MIN_MESSAGE_BYTES = (1 << 20) + (64 << 10)


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
    # This manager's node id: its raft identity, the one its certificate names.
    node_id: str
    # host:port of this manager's raft transport: it binds only that address.
    address: str
    data_dir: Path
    # Where the other managers listen, by node id: an address book for before the store
    # has their Node objects. Who is a member is in the log, never here.
    peers: Mapping[str, str] = field(default_factory=dict)
    # With an empty data dir: start a new group whose voters are this manager and `peers`
    # (`swarmd init`). Otherwise an empty data dir waits for a leader to add this manager
    # (a join), so a manager that lost its data never starts a group of its own.
    bootstrap: bool = False
    tick_period: float = 0.05
    # An election starts after 1-2x this many ticks without a leader; a leader that hears
    # from no quorum for this many ticks steps down.
    election_ticks: int = 8
    heartbeat_ticks: int = 2
    compaction_min_entries: int = 5000
    # Largest store transaction (as etcd's default request limit).
    max_proposal_bytes: int = 3 << 19
    # Largest raft message accepted (snapshots travel in 1 MiB pieces, appends are cut).
    max_message_bytes: int = 16 << 20
    proposal_timeout: float = 10.0

    @property
    def election_timeout(self) -> float:
        """The shortest election timeout, in seconds."""
        return self.election_ticks * self.tick_period

    def validate(self) -> None:
        if not self.node_id:
            raise RaftConfigError("raft node_id is empty")
        parse_address(self.address, "raft address")
        for node_id, peer in self.peers.items():
            if not node_id:
                raise RaftConfigError(f"raft peer {peer} has no node id")
            parse_address(peer, f"raft peer {node_id}")
        if self.node_id in self.peers:
            raise RaftConfigError(f"raft peers list this manager ({self.node_id})")
        if not 1 <= self.heartbeat_ticks < self.election_ticks:
            raise RaftConfigError(
                f"heartbeat_ticks {self.heartbeat_ticks} must be at least 1 and under "
                f"election_ticks {self.election_ticks}"
            )
        if self.compaction_min_entries < 2:
            raise RaftConfigError("compaction_min_entries must be at least 2")
        if self.max_proposal_bytes < 1024:
            raise RaftConfigError("max_proposal_bytes must be at least 1024")
        if self.max_message_bytes < max(2 * self.max_proposal_bytes, MIN_MESSAGE_BYTES):
            raise RaftConfigError(
                "max_message_bytes must be at least twice max_proposal_bytes and at least "
                f"{MIN_MESSAGE_BYTES} (a snapshot piece and its header)"
            )
        for name in ("proposal_timeout", "tick_period"):
            if getattr(self, name) <= 0:
                raise RaftConfigError(f"{name} must be positive")
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise RaftConfigError(f"raft data_dir {self.data_dir} is not a directory")
