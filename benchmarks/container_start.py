"""Container start latency and shim memory: Shoal beside runc and Docker on this machine.

    (a) the engine's in-process start of busybox `true` until it is reaped
    (b) `shoal run --rm busybox true`, the CLI end to end
    (c) `runc run` of the same root filesystem as an OCI bundle (when runc is installed)
    (d) `docker run --rm busybox true` (when a Docker daemon answers)
    and the PSS of Shoal's own processes per running container, with 50 running.

Run as root: `.venv/bin/python benchmarks/container_start.py`. It brings up a one-machine lab
(swarm-machine) whose registry holds busybox, runs the measurements inside that machine, and
removes the lab. The last line is `key=value` figures; ratios are Shoal's time over the peer's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
RUNC = shutil.which("runc")
DOCKER = shutil.which("docker")
# REFERENCE.md section 2: `docker run --rm busybox true` measured on this kind of machine,
# used for the ratio when no Docker daemon answers here.
DOCKER_REFERENCE_MS = 268.0


def median_ms(fn: Callable[[], None], runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples) * 1000


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def inside(runs: int, containers: int) -> dict[str, float]:
    """The measurements, run inside the lab machine (its netns, cgroup and state dir)."""
    from runtime.config import EngineConfig
    from runtime.container import engine as engine_module
    from runtime.container.spec import ContainerSpec
    from runtime.engine_factory import make_engine
    from runtime.image.store import ImageStore

    registry = os.environ["SWARM_MACHINE_REGISTRY"]
    root = Path(os.environ["SWARM_MACHINE_STATE_DIR"]) / "shoal"
    config = EngineConfig(
        root=root,
        insecure_registries=(registry,),
        cgroup_parent=f"{os.environ['SWARM_MACHINE_CGROUP_PARENT']}/shoal",
    )
    ref = f"{registry}/busybox:latest"
    image = ImageStore(config).pull(ref)
    engine = make_engine(config, cleanup_on_exit=False)
    figures: dict[str, float] = {}

    def in_process() -> None:
        cid = engine.run(ContainerSpec(image=ref, command=("true",), network="none"), image)
        engine.wait(cid)
        engine.remove(cid)

    figures["inprocess_ms"] = median_ms(in_process, runs)

    env = {**os.environ, "SHOAL_INSECURE_REGISTRIES": registry}
    cli = [str(BIN / "shoal"), "--root", str(root), "run", "--rm", ref, "true"]

    def shoal_cli() -> None:
        subprocess.run(cli, check=True, env=env, stdout=subprocess.DEVNULL)

    figures["cli_ms"] = median_ms(shoal_cli, runs)

    if RUNC:
        bundle = Path(tempfile.mkdtemp(prefix="runc-bundle-"))
        try:
            lowers = image.lower_dirs()
            if len(lowers) != 1:
                raise SystemExit("the runc comparison expects a one-layer busybox")
            spec = json.loads(
                subprocess.run(
                    [RUNC, "spec", "--bundle", str(bundle)],
                    capture_output=True,
                    check=True,
                    text=True,
                ).stdout
                or (bundle / "config.json").read_text()
            )
            spec["process"]["terminal"] = False
            spec["process"]["args"] = ["true"]
            spec["root"] = {"path": os.path.realpath(lowers[0]), "readonly": True}
            (bundle / "config.json").write_text(json.dumps(spec))
            counter = iter(range(10**9))

            def runc_run() -> None:
                subprocess.run(
                    [RUNC, "run", "--bundle", str(bundle), f"bench{next(counter)}"],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )

            figures["runc_ms"] = median_ms(runc_run, runs)
        finally:
            shutil.rmtree(bundle)

    ids = [
        engine.run(ContainerSpec(image=ref, command=("sleep", "600"), network="none"), image)
        for _ in range(containers)
    ]
    try:
        time.sleep(engine_module.REEXEC_SHIM_AFTER + 1.0)  # let every shim slim down
        shims = [engine.store.find(cid).state().shim_pid for cid in ids]
        figures["pss_mib_per_container"] = sum(pss_kib(p) for p in shims) / len(shims) / 1024
    finally:
        for cid in ids:
            engine.remove(cid, force=True)
    return figures


def docker_ms(runs: int) -> float | None:
    if not DOCKER or subprocess.run([DOCKER, "info"], capture_output=True).returncode != 0:
        return None
    if subprocess.run([DOCKER, "image", "inspect", "busybox"], capture_output=True).returncode:
        return None  # no internet here to pull it: load busybox into Docker to compare

    def docker_run() -> None:
        subprocess.run(
            [DOCKER, "run", "--rm", "busybox", "true"], check=True, stdout=subprocess.DEVNULL
        )

    return median_ms(docker_run, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        print(json.dumps(inside(args.runs, args.containers)))
        return
    if os.geteuid() != 0:
        raise SystemExit("run as root: containers need namespaces and cgroups")
    lab = f"bench{os.getpid()}"
    machine = f"{lab}-node1"
    sm = str(BIN / "swarm-machine")
    subprocess.run(
        [sm, "lab", "up", "--name", lab, "--machines", "1"], check=True, stdout=subprocess.DEVNULL
    )
    try:
        result = subprocess.run(
            [
                sm,
                "ssh",
                machine,
                "--",
                sys.executable,
                __file__,
                "--inside",
                "--runs",
                str(args.runs),
                "--containers",
                str(args.containers),
            ],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[1],
        )
        if result.returncode != 0:
            raise SystemExit(f"the measurements failed inside {machine}:\n{result.stderr}")
        out = result.stdout
    finally:
        subprocess.run([sm, "lab", "down", lab], check=True, stdout=subprocess.DEVNULL)
    figures = json.loads(out.strip().splitlines()[-1])
    docker = docker_ms(args.runs)
    print(f"(a) in-process start of busybox true, until reaped: {figures['inprocess_ms']:.1f} ms")
    print(f"(b) shoal run --rm busybox true:                     {figures['cli_ms']:.1f} ms")
    if "runc_ms" in figures:
        print(f"(c) runc run (same rootfs, OCI bundle):              {figures['runc_ms']:.1f} ms")
    else:
        print("(c) runc: not installed (apt-get install runc)")
    print(
        f"(d) docker run --rm busybox true:                    "
        f"{f'{docker:.1f} ms' if docker else 'no Docker daemon with busybox here'}"
        f"{'' if docker else f' (REFERENCE.md: {DOCKER_REFERENCE_MS:.0f} ms)'}"
    )
    print(
        f"PSS of Shoal's processes per running container ({args.containers} running): "
        f"{figures['pss_mib_per_container']:.2f} MiB"
    )
    line = {
        "inprocess_ms": f"{figures['inprocess_ms']:.2f}",
        "cli_ms": f"{figures['cli_ms']:.2f}",
        "inprocess_vs_runc": f"{figures['inprocess_ms'] / figures['runc_ms']:.3f}"
        if "runc_ms" in figures
        else "na",
        "cli_vs_docker": f"{figures['cli_ms'] / docker:.3f}" if docker else "na",
        "cli_vs_docker_reference": f"{figures['cli_ms'] / DOCKER_REFERENCE_MS:.3f}",
        "pss_mib_per_container": f"{figures['pss_mib_per_container']:.2f}",
    }
    print(" ".join(f"{k}={v}" for k, v in line.items()))


if __name__ == "__main__":
    main()
