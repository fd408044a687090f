"""swarmd's --heartbeat-period and --listen-control-api, seen through the real swarmctl."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import SWARMCTL, SWARMD, Run, SwarmCluster


def _run(lab: LabHandle, *argv: str) -> Run:
    process = lab.run(
        lab.machines[0], list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = process.communicate(timeout=60)
    return Run(process.returncode, out, err)


def test_heartbeat_period_and_control_socket_flags(
    make_lab: Callable[[int], LabHandle], tmp_path: Path
) -> None:
    lab = make_lab(1)
    (machine,) = lab.machines
    swarm = SwarmCluster(lab, tmp_path)
    state_dir = swarm.state_dir(machine)
    socket = machine.state_dir / "control" / "api.sock"
    init = ["init", "-d", str(state_dir), "--advertise-addr", machine.record.ip]

    refused = _run(lab, SWARMD, *init, "--heartbeat-period", "0s")
    assert refused.code == 1
    assert refused.err.strip() == "swarmd: error: the heartbeat period must be positive"
    assert not state_dir.exists()
    try:
        daemon = swarm._start(
            machine, *init, "--heartbeat-period", "2s", "--listen-control-api", str(socket)
        )
        daemon.wait_for(r"serving on")
        assert stat.S_IMODE(socket.stat().st_mode) == 0o600
        assert not (state_dir / "swarmd.sock").exists()
        inspect = _run(lab, SWARMCTL, "-s", str(socket), "cluster", "inspect")
        assert inspect.code == 0, inspect.err
        assert json.loads(inspect.out)["spec"]["dispatcher"]["heartbeat_period"] == "2s"
    finally:
        swarm.stop_all()
