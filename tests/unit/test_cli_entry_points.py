"""The four programs exist and show --help."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploy.cli import main as swarm_machine
from node.cli import main as swarmd
from runtime.cli import main as shoal
from swarmctl.cli import main as swarmctl

PROGRAMS = {"swarmd": swarmd, "swarmctl": swarmctl, "shoal": shoal, "swarm-machine": swarm_machine}


@pytest.mark.parametrize("name", PROGRAMS)
def test_help(name: str) -> None:
    result = CliRunner().invoke(PROGRAMS[name], ["--help"], prog_name=name)
    assert result.exit_code == 0
    assert f"Usage: {name}" in result.output


def test_swarm_machine_refuses_non_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    result = CliRunner().invoke(swarm_machine, ["ls"])
    assert result.exit_code == 1
    assert result.output == (
        "swarm-machine: error: swarm-machine must run as root (it creates namespaces and cgroups)\n"
    )
