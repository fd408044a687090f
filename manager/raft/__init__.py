"""Raft replication of the manager store, on pysyncobj, with Shoal's durability, security
and consistency safeguards (see ARCHITECTURE.md "Raft" and node.py)."""

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
