"""Raft replication of the manager store: Shoal's own consensus core (core/), its
write-ahead log and snapshots on disk, and its messages on mutual-TLS gRPC streams between
managers known by their certificates (raft.py tells how they fit)."""

from manager.raft.config import RaftConfig
from manager.raft.errors import (
    MembershipRefused,
    RaftConfigError,
    RaftDataError,
    RaftError,
    RaftFailed,
)
from manager.raft.leadership import Leadership, LeadershipWatch
from manager.raft.raft import Raft, RaftStatus

__all__ = [
    "Leadership",
    "LeadershipWatch",
    "MembershipRefused",
    "Raft",
    "RaftConfig",
    "RaftConfigError",
    "RaftDataError",
    "RaftError",
    "RaftFailed",
    "RaftStatus",
]
