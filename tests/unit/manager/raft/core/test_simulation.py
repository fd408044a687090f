"""Raft's safety properties over many seeded random runs of a simulated cluster (see
simulation.py for the model and the invariants), and proof that the invariants bite: cores
and disks broken on purpose are caught.

A failure names its seed, the last 30 actions and the state of every node, and replays
exactly (whatever PYTHONHASHSEED) with the command it prints:
    .venv/bin/pytest "<this file>::test_random_cluster_stays_safe[SEED]"
and every action of it prints with:
    .venv/bin/python -m tests.unit.manager.raft.core.simulation SEED --steps 600
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from manager.raft.core import (
    Entry,
    EntryKind,
    HardState,
    Membership,
    Message,
    MsgType,
    Raft,
    Ready,
    Snapshot,
)
from tests.unit.manager.raft.core.simulation import (
    Cluster,
    Disk,
    InvariantViolation,
    Simulation,
    SimulationFailure,
    decode_state,
    encode_state,
    run,
)

SEEDS = 1500
STEPS = 700  # with SEEDS, about 25 s on one core
ROOT = Path(__file__).resolve().parents[5]


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_cluster_stays_safe(seed: int) -> None:
    run(seed, STEPS)


# -- the invariants bite ---------------------------------------------------------------------


def first_failure(
    seeds: Iterable[int],
    *,
    raft_factory: Callable[..., Raft] = Raft,
    cluster_class: type[Cluster] = Cluster,
    expected: tuple[str, ...],
) -> str:
    """The first failure among `seeds` whose cause says one of `expected`."""
    for seed in seeds:
        try:
            Simulation(seed, STEPS, raft_factory=raft_factory, cluster_class=cluster_class).run()
        except SimulationFailure as failure:
            if any(text in str(failure.__cause__) for text in expected):
                return str(failure)
    raise AssertionError(f"no seed failed with any of {expected}")


def forgetting_votes(node_id: str, *, hard_state: HardState, **options: Any) -> Raft:
    """A node whose disk lost its vote: back from a crash, it may vote twice in a term."""
    return Raft(node_id, hard_state=dataclasses.replace(hard_state, vote=""), **options)


class VotingBlindly(Raft):
    """Grants votes without comparing logs (every candidate looks up to date)."""

    def step(self, message: Message) -> None:
        if message.type in (MsgType.VOTE, MsgType.PRE_VOTE):
            message = dataclasses.replace(message, log_term=1 << 30)
        super().step(message)


class CommittingEagerly(Raft):
    """Takes a heartbeat's commit index as if it covered its whole log."""

    def step(self, message: Message) -> None:
        if message.type is MsgType.HEARTBEAT:
            message = dataclasses.replace(message, commit=1 << 30)
        super().step(message)


class LosingAcknowledgedWrites(Cluster):
    """A disk that loses, in a crash, the entries written past the commit index (acknowledged,
    but never really synced)."""

    def crash(self, node_id: str) -> None:
        super().crash(node_id)
        disk = self.nodes[node_id].disk
        disk.entries = [e for e in disk.entries if e.index <= disk.hard_state.commit]


def test_a_disk_forgetting_votes_is_caught() -> None:
    report = first_failure(
        range(100),
        raft_factory=forgetting_votes,
        expected=("changed its vote", "election safety"),
    )
    assert "replay:" in report and "last 30 actions" in report


def test_votes_that_ignore_logs_are_caught() -> None:
    first_failure(
        range(200),
        raft_factory=VotingBlindly,
        expected=("leader completeness", "state machine safety", "committed at that index"),
    )


def test_a_follower_committing_what_it_does_not_match_is_caught() -> None:
    first_failure(
        range(200),
        raft_factory=CommittingEagerly,
        expected=("leader completeness", "state machine safety", "committed at that index"),
    )


def test_a_disk_losing_acknowledged_entries_is_caught() -> None:
    first_failure(
        range(300),
        cluster_class=LosingAcknowledgedWrites,
        expected=("leader completeness", "state machine safety", "durability"),
    )


# -- the model itself ------------------------------------------------------------------------


def test_a_seed_replays_exactly_whatever_the_hash_seed() -> None:
    def replay(hash_seed: str) -> tuple[int, str, str]:
        result = subprocess.run(
            [sys.executable, "-m", "tests.unit.manager.raft.core.simulation", "11"],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=False,  # the same run, whether it passes or not
        )
        return result.returncode, result.stdout, result.stderr

    first = replay("1")
    assert first == replay("2")
    assert len(first[1].splitlines()) > 100


def test_entries_replace_the_stored_ones_from_the_first_index_on() -> None:
    disk = Disk()
    disk.write(Ready(entries=[Entry(1, 1), Entry(1, 2), Entry(1, 3)]))
    disk.write(Ready(entries=[Entry(2, 2)], hard_state=HardState(2, "n2", 1)))
    assert disk.entries == [Entry(1, 1), Entry(2, 2)]
    with pytest.raises(InvariantViolation):
        disk.write(Ready(entries=[Entry(2, 4)]))  # a gap


def test_the_state_machine_round_trips_through_snapshot_data() -> None:
    applied = [Entry(1, 1), Entry(1, 2, EntryKind.NORMAL, b"\x00data"), Entry(2, 3)]
    assert decode_state(encode_state(applied)) == applied
    disk = Disk()
    disk.write(Ready(entries=applied))
    disk.compact(Snapshot(2, 1, Membership(frozenset({"n1"})), encode_state(applied[:2])))
    assert disk.entries == [Entry(2, 3)]
    assert (disk.term_at(1), disk.term_at(2), disk.last_index) == (None, 1, 3)
