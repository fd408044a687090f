"""The lab's OCI registry: Debian's docker-registry in a namespace on the lab switch."""

from __future__ import annotations

import http.client
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from common import libc, namespaces
from deploy import busybox_image
from deploy.errors import MachineError

REGISTRY_BIN = "/usr/bin/docker-registry"
SKOPEO_BIN = "/usr/bin/skopeo"
PORT = 5000


def registry_netns(lab: str) -> str:
    return f"{lab}-registry"


def _enter_netns_preexec(netns: str) -> Callable[[], None]:
    path = str(namespaces.netns_path(netns))

    def preexec() -> None:  # forked child: raw syscalls only
        namespaces.enter(path, libc.CLONE_NEWNET)

    return preexec


def run_in(netns: str, argv: Sequence[str], timeout: float) -> None:
    """Run a command to completion inside `netns`; a failure raises with its output."""
    result = subprocess.run(
        list(argv),
        preexec_fn=_enter_netns_preexec(netns),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if result.returncode != 0:
        raise MachineError(f"{argv[0]} failed: {(result.stderr or result.stdout).strip()}")


def start(lab: str, workdir: Path, address: str) -> int:
    """Start the registry serving `address`:5000; return its pid. It outlives this process."""
    for tool in (REGISTRY_BIN, SKOPEO_BIN):
        if not os.access(tool, os.X_OK):
            raise MachineError(f"{tool} is missing: run `make setup` (apt: docker-registry skopeo)")
    config = {
        "version": 0.1,
        "log": {"level": "warn", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"{address}:{PORT}"},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yml").write_text(yaml.safe_dump(config))
    with open(workdir / "registry.log", "ab") as log:
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(workdir / "config.yml")],
            preexec_fn=_enter_netns_preexec(registry_netns(lab)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    return proc.pid


def probe(netns: str, address: str, timeout: float = 2.0) -> int:
    """HTTP status of `GET /v2/` on the registry, asked from inside `netns`."""
    with namespaces.entered_netns(netns):
        conn = http.client.HTTPConnection(address, PORT, timeout=timeout)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status
        finally:
            conn.close()


def wait_ready(lab: str, address: str, deadline_s: float = 15.0) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if probe(registry_netns(lab), address) == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise MachineError(f"registry at {address}:{PORT} did not answer within {deadline_s}s")
        time.sleep(0.05)


def seed_busybox(lab: str, address: str) -> None:
    """Push busybox as `busybox:latest` (Docker schema 2) and `busybox:index` (OCI index)."""
    dest = f"docker://{address}:{PORT}/busybox"
    with tempfile.TemporaryDirectory(prefix="swarm-machine-busybox-") as tmp:
        layout = Path(tmp)
        busybox_image.build_layout(layout)
        base = [SKOPEO_BIN, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]
        run_in(
            registry_netns(lab),
            [*base, "--format", "v2s2", f"oci:{layout}:latest", f"{dest}:latest"],
            120,
        )
        run_in(registry_netns(lab), [*base, "--all", f"oci:{layout}:index", f"{dest}:index"], 120)
