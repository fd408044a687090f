"""Names, addresses and the on-disk records of machines and labs."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.errors import MachineError
from deploy.lab import FIRST_MACHINE_HOST, free_addresses, machine_names
from deploy.state import LabRecord, MachineRecord, Storage, validate_name


@pytest.mark.parametrize("name", ["node1", "a", "st123-l4-node2", "x" * 40])
def test_valid_names(name: str) -> None:
    validate_name(name)


@pytest.mark.parametrize("name", ["", "Node1", "-lead", "a_b", "a/b", "..", "x" * 41, "a b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(MachineError, match="invalid machine name"):
        validate_name(name)


def test_machine_names() -> None:
    assert machine_names("lab", 3) == ["lab-node1", "lab-node2", "lab-node3"]


def test_addresses_fill_gaps_and_run_out() -> None:
    first = f"10.77.0.{FIRST_MACHINE_HOST}/16"
    third = f"10.77.0.{FIRST_MACHINE_HOST + 2}/16"
    assert free_addresses("10.77.0.0/16", {first, third}, 2) == [
        f"10.77.0.{FIRST_MACHINE_HOST + 1}/16",
        f"10.77.0.{FIRST_MACHINE_HOST + 3}/16",
    ]
    # A /28 has hosts 1..14; machines start at FIRST_MACHINE_HOST.
    assert len(free_addresses("10.1.0.0/28", set(), 14 - FIRST_MACHINE_HOST + 1)) == 5
    with pytest.raises(MachineError, match="no free address"):
        free_addresses("10.1.0.0/28", set(), 6)


def test_records_round_trip_and_list(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.save_lab(LabRecord("lab", "10.77.0.0/16", explicit=True, registry=True))
    storage.save_machine(MachineRecord("lab-node2", "lab", "10.77.0.11/16", state="running"))
    storage.save_machine(MachineRecord("lab-node1", "lab", "10.77.0.10/16"))
    storage.save_machine(MachineRecord("solo", "other", "10.77.0.10/16"))
    assert [m.name for m in storage.machines("lab")] == ["lab-node1", "lab-node2"]
    assert [m.name for m in storage.machines()] == ["lab-node1", "lab-node2", "solo"]
    node2 = storage.machine("lab-node2")
    assert node2 is not None and node2.state == "running" and node2.ip == "10.77.0.11"
    assert storage.machine("missing") is None
    assert [lab.name for lab in storage.labs()] == ["lab"]
    assert not list(tmp_path.rglob("*.tmp")), "atomic writes leave no temporary file"


def test_storage_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_MACHINE_STORAGE_PATH", str(tmp_path))
    assert Storage().root == tmp_path
