"""swarmd's --heartbeat-period and --listen-control-api, seen through the real swarmctl."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import SWARMD, SwarmCluster
from tests.integration.swarmctl.test_swarmctl import SWARMCTL


def test_heartbeat_period_and_control_socket_flags(
    make_lab: Callable[[int], LabHandle], tmp_path: Path
) -> None:
    lab = make_lab(1)
    (machine,) = lab.machines
    swarm = SwarmCluster(lab, tmp_path)
    state_dir = swarm.state_dir(machine)
    socket = machine.state_dir / "control" / "api.sock"
    refused = lab.run(
        machine,
        [
            SWARMD,
            "init",
            "-d",
            str(state_dir),
            "--advertise-addr",
            machine.record.ip,
            "--heartbeat-period",
            "0s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 1
    assert err.strip() == "swarmd: error: the heartbeat period must be positive"
    assert not state_dir.exists()
    try:
        daemon = swarm._start(
            machine,
            "init",
            "-d",
            str(state_dir),
            "--advertise-addr",
            machine.record.ip,
            "--heartbeat-period",
            "2s",
            "--listen-control-api",
            str(socket),
        )
        daemon.wait_for(r"serving on")
        assert stat.S_IMODE(socket.stat().st_mode) == 0o600
        assert not (state_dir / "swarmd.sock").exists()
        inspect = lab.run(
            machine,
            [SWARMCTL, "-s", str(socket), "cluster", "inspect"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = inspect.communicate(timeout=60)
        assert inspect.returncode == 0, err
        cluster = json.loads(out)
        assert cluster["spec"]["dispatcher"]["heartbeat_period"] == "2s"
    finally:
        swarm.stop_all()
