"""Latency of attaching a container to Shoal's bridge network and detaching it again,
beside the CNI bridge plugin (podman's and Kubernetes' default) when it is installed.

Everything happens inside network namespaces this script creates: an "engine" namespace
that plays the host (its bridge, NAT rules, forwarding) and one namespace per container;
the host's own namespace is never changed. Run as root:

    .venv/bin/python benchmarks/network_attach.py [--rounds N]

Last line: attach_ms=… attach_port_ms=… detach_ms=… and, with the CNI plugins in
/usr/lib/cni, cni_attach_ms=… cni_detach_ms=… attach_vs_cni=… detach_vs_cni=… (medians in
milliseconds; ratios are Shoal's time over the peer's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import libc, namespaces
from runtime.config import EngineConfig
from runtime.network import BridgeNetwork, PortMapping

CNI_DIR = Path("/usr/lib/cni")


def timed(work: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    work(*args)
    return (time.perf_counter() - start) * 1000


def shoal_rounds(tmp: Path, rounds: int) -> dict[str, list[float]]:
    network = BridgeNetwork(EngineConfig(root=tmp / "shoal"))
    network.setup()  # the one-time bridge and nft set-up is not what a container start pays
    times: dict[str, list[float]] = {"attach": [], "attach_port": [], "detach": []}
    for i in range(rounds):
        for kind, ports in (("attach", ()), ("attach_port", (PortMapping(80, 20000 + i),))):
            ns = tmp / f"shoal-{kind}-{i}"
            namespaces.create_bound(ns, libc.CLONE_NEWNET)
            try:
                cid = f"bench-{kind}-{i}"
                times[kind].append(timed(network.attach, cid, str(ns), ports))
                times["detach"].append(timed(network.detach, cid))
            finally:
                namespaces.remove_bound(ns)
    network.teardown_all()
    return times


def cni(command: str, config: dict[str, object], container_id: str, ns: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": str(ns),
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(CNI_DIR),
    }
    result = subprocess.run(
        [str(CNI_DIR / "bridge")],
        input=json.dumps(config),
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"CNI bridge {command} failed: {result.stdout} {result.stderr}")


def cni_rounds(tmp: Path, rounds: int) -> dict[str, list[float]]:
    config: dict[str, object] = {
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": True,
        "ipMasq": True,
        "ipam": {
            "type": "host-local",
            "subnet": "10.88.0.0/16",
            "dataDir": str(tmp / "cni-ipam"),
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }
    warm = tmp / "cni-warm"
    namespaces.create_bound(warm, libc.CLONE_NEWNET)
    try:
        cni("ADD", config, "warm", warm)  # creates the bridge: not a per-container cost
    finally:
        namespaces.remove_bound(warm)
    times: dict[str, list[float]] = {"attach": [], "detach": []}
    for i in range(rounds):
        ns = tmp / f"cni-{i}"
        namespaces.create_bound(ns, libc.CLONE_NEWNET)
        try:
            times["attach"].append(timed(cni, "ADD", config, f"c{i}", ns))
            times["detach"].append(timed(cni, "DEL", config, f"c{i}", ns))
        finally:
            namespaces.remove_bound(ns)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("network_attach.py needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="shoal-net-bench-") as tmp_name:
        tmp = Path(tmp_name)
        engine = tmp / "engine"
        namespaces.create_bound(engine, libc.CLONE_NEWNET)
        try:
            shoal = namespaces.call_in_netns(engine, lambda: shoal_rounds(tmp, args.rounds))
            peer = None
            if (CNI_DIR / "bridge").exists():
                peer = namespaces.call_in_netns(engine, lambda: cni_rounds(tmp, args.rounds))
        finally:
            namespaces.remove_bound(engine)
    figures = {f"{k}_ms": statistics.median(v) for k, v in shoal.items()}
    print(
        f"shoal, {args.rounds} rounds (median ms): "
        + ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
    )
    if peer is not None:
        cni_figures = {f"cni_{k}_ms": statistics.median(v) for k, v in peer.items()}
        print(
            "CNI bridge plugin (median ms): "
            + ", ".join(f"{k} {v:.2f}" for k, v in cni_figures.items())
        )
        figures |= cni_figures
        figures["attach_vs_cni"] = figures["attach_ms"] / figures["cni_attach_ms"]
        figures["detach_vs_cni"] = figures["detach_ms"] / figures["cni_detach_ms"]
    else:
        print("CNI bridge plugin not installed: no peer figures")
    print(" ".join(f"{k}={v:.2f}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
