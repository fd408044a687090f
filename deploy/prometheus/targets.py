"""The scrape targets file (file_sd_configs): one target per machine, labelled with its name.

Prometheus re-reads the file whenever it changes, so it is replaced atomically: a scrape
never sees half of it.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from deploy.errors import MachineError
from deploy.netns_driver import Machine
from deploy.prometheus.errors import PrometheusError
from deploy.state import validate_name

METRICS_PORT = 9100  # where the lab's swarmd serve /metrics (`--listen-metrics ADDR:9100`)


def targets_for(machines: Iterable[Machine], port: int = METRICS_PORT) -> dict[str, str]:
    """Machine name -> "address:port" of its swarmd's metrics endpoint."""
    return {m.name: f"{m.record.ip}:{port}" for m in machines}


def _check_address(machine: str, address: str) -> None:
    host, sep, port = address.rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
        valid_port = sep == ":" and port.isdigit() and 0 < int(port) < 65536
    except ValueError:
        valid_port = False
    if not valid_port:
        raise PrometheusError(
            f"scrape target of machine {machine!r} is {address!r}, not an IP address and port"
        )


def file_sd_groups(targets: Mapping[str, str]) -> list[dict[str, Any]]:
    """The file_sd document for `targets` (machine name -> "address:port"), validated."""
    for machine, address in targets.items():
        try:
            validate_name(machine)
        except MachineError as exc:
            raise PrometheusError(f"scrape target: {exc}") from None
        _check_address(machine, address)
    return [
        {"targets": [address], "labels": {"machine": machine}}
        for machine, address in sorted(targets.items())
    ]


def write_targets(path: Path, targets: Mapping[str, str]) -> None:
    """Replace the targets file at `path`; invalid targets raise before anything is written."""
    groups = file_sd_groups(targets)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(groups, indent=2) + "\n")
    os.replace(tmp, path)
