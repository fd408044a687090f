"""Config validation and the quorum rules of membership changes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from manager.raft import MembershipRefused, RaftConfig, RaftConfigError
from manager.raft.membership import check_add, check_remove

GOOD = RaftConfig("10.0.0.1:4242", ("10.0.0.2:4242",), Path("/nonexistent"), key=b"k" * 16)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"address": "0.0.0.0:4242"}, "never to all"),
        ({"address": "manager1:4242"}, "is not an IP address"),
        ({"address": "10.0.0.1"}, "is not host:port"),
        ({"address": "10.0.0.1:70000"}, "out of range"),
        ({"peers": ("10.0.0.1:4242",)}, "own address"),
        ({"peers": ("10.0.0.2:1", "10.0.0.2:1")}, "twice"),
        ({"peers": ("[::1]:1",)}, "raft peer"),
        ({"key": b""}, "raft key must be at least 16 bytes"),
        ({"key": "a-string-not-bytes"}, "raft key"),
        ({"election_timeout": (1.0, 0.5)}, "election_timeout"),
        ({"heartbeat_period": 0.2}, "heartbeat_period"),
        ({"leader_fallback_timeout": 0.05}, "leader_fallback_timeout"),
        ({"connection_timeout": 0.5}, "connection_timeout"),
        ({"compaction_min_entries": 1}, "compaction_min_entries"),
        ({"snapshot_chunk_bytes": 10}, "snapshot_chunk_bytes"),
        ({"proposal_timeout": 0}, "proposal_timeout"),
    ],
)
def test_bad_settings_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RaftConfigError, match=message):
        dataclasses.replace(GOOD, **change).validate()


def test_data_dir_must_be_a_directory(tmp_path: Path) -> None:
    GOOD.validate()
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(RaftConfigError, match="is not a directory"):
        dataclasses.replace(GOOD, data_dir=file).validate()
    dataclasses.replace(GOOD, address="::1:4242", peers=()).validate()


ABC = {"a", "b", "c"}


def test_removal_must_leave_a_reachable_quorum() -> None:
    check_remove(ABC, ABC, "a", "c", force=False)
    check_remove(ABC, {"a", "b"}, "a", "c", force=False)  # removing the dead one is fine
    with pytest.raises(MembershipRefused, match="would lose quorum: 1 of the remaining 2"):
        check_remove(ABC, {"a", "b"}, "a", "b", force=False)
    check_remove(ABC, {"a", "b"}, "a", "b", force=True)
    with pytest.raises(MembershipRefused, match="is the leader"):
        check_remove(ABC, ABC, "a", "a", force=True)
    with pytest.raises(MembershipRefused, match="is not a raft member"):
        check_remove(ABC, ABC, "a", "z", force=False)


def test_adding_needs_a_quorum_of_the_bigger_group() -> None:
    check_add(ABC, ABC, "d", force=False)  # 3 of 4 reachable
    with pytest.raises(MembershipRefused, match="would need 3 reachable members of 4"):
        check_add(ABC, {"a", "b"}, "d", force=False)
    check_add(ABC, {"a", "b"}, "d", force=True)
    with pytest.raises(MembershipRefused, match="already a raft member"):
        check_add(ABC, ABC, "b", force=False)
