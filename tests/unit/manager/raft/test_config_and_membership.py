"""Config validation (each error names the field) and the quorum rules of membership
changes."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from manager.ca.cluster_ca import ClusterCA
from manager.raft import MembershipRefused, Raft, RaftConfig, RaftConfigError
from manager.raft.config import MIN_MESSAGE_BYTES
from manager.raft.membership import check_add, check_remove, quorum
from manager.store import Store
from tests.raft_support import node_credentials

GOOD = RaftConfig(
    node_id="n1",
    address="10.0.0.1:4242",
    data_dir=Path("/nonexistent"),
    peers={"n2": "10.0.0.2:4242", "n3": "10.0.0.3:4242"},
)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"node_id": ""}, "raft node_id is empty"),
        ({"address": "0.0.0.0:4242"}, "raft address .*never to all"),
        ({"address": "manager1:4242"}, "raft address .*is not an IP address"),
        ({"address": "10.0.0.1"}, "raft address .*is not host:port"),
        ({"address": "10.0.0.1:70000"}, "raft address .*out of range"),
        ({"address": "10.0.0.1:0"}, "raft address .*out of range"),
        ({"peers": {"": "10.0.0.2:4242"}}, "raft peer 10.0.0.2:4242 has no node id"),
        ({"peers": {"n2": "10.0.0.2"}}, "raft peer n2 .*is not host:port"),
        ({"peers": {"n2": "0.0.0.0:1"}}, "raft peer n2 .*never to all"),
        ({"peers": {"n1": "10.0.0.2:4242"}}, r"raft peers list this manager \(n1\)"),
        ({"heartbeat_ticks": 0}, "heartbeat_ticks 0 must be at least 1"),
        ({"heartbeat_ticks": 8}, "heartbeat_ticks 8 .*under election_ticks 8"),
        ({"election_ticks": 1, "heartbeat_ticks": 1}, "election_ticks 1"),
        ({"compaction_min_entries": 1}, "compaction_min_entries"),
        ({"max_proposal_bytes": 1023}, "max_proposal_bytes"),
        ({"max_message_bytes": 3 << 19}, "max_message_bytes"),
        # Below a snapshot piece and its header: a snapshot could never be sent.
        ({"max_proposal_bytes": 64 << 10, "max_message_bytes": 256 << 10}, "max_message_bytes"),
        ({"proposal_timeout": 0}, "proposal_timeout"),
        ({"tick_period": 0.0}, "tick_period"),
        ({"tick_period": -0.05}, "tick_period"),
    ],
)
def test_bad_settings_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RaftConfigError, match=message):
        dataclasses.replace(GOOD, **change).validate()


def test_good_settings_pass() -> None:
    GOOD.validate()
    dataclasses.replace(GOOD, address="::1:4242", peers={}).validate()
    dataclasses.replace(GOOD, heartbeat_ticks=7, compaction_min_entries=2).validate()
    dataclasses.replace(
        GOOD, max_proposal_bytes=1024, max_message_bytes=MIN_MESSAGE_BYTES, bootstrap=True
    ).validate()
    assert dataclasses.replace(GOOD, tick_period=0.1, election_ticks=10).election_timeout == (
        pytest.approx(1.0)
    )


def test_data_dir_must_be_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(
        RaftConfigError, match=re.escape(f"raft data_dir {file} is not a directory")
    ):
        dataclasses.replace(GOOD, data_dir=file).validate()
    dataclasses.replace(GOOD, data_dir=tmp_path).validate()


def test_a_raft_node_is_not_made_with_bad_settings(tmp_path: Path) -> None:
    ca = ClusterCA.initialize()
    credentials = node_credentials(ca, "n1")
    bad = dataclasses.replace(GOOD, data_dir=tmp_path, peers={"n1": "10.0.0.2:4242"})
    with pytest.raises(RaftConfigError, match="raft peers list this manager"):
        Raft(bad, Store(), credentials)
    assert list(tmp_path.iterdir()) == []  # nothing written


ABC = {"a", "b", "c"}


def test_quorum_is_a_majority() -> None:
    assert [quorum(n) for n in range(1, 7)] == [1, 2, 2, 3, 3, 4]


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
