"""`make demo`: a lab of 3 managers and 2 workers running the classic Docker tutorial app.

The app (deploy/demo_app: Flask, with a visit counter in Redis) runs as service `web`, 5
replicas publishing port 4000 through the routing mesh, beside service `redis`, both on an
overlay network; their images are built from Debian packages into the lab's registry
(deploy.demo_images). A busybox service publishes port 8080 in host mode beside them.

Drives Shoal's programs as a user would: swarm-machine for the machines, swarmd on each
(started in the background inside its machine, logging to its state dir), swarmctl for the
services. `make demo-down` (swarm-machine lab down demo) removes all of it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from deploy.demo_images import seed_demo_images
from deploy.lab import Lab
from deploy.prometheus.server import LabPrometheus
from deploy.prometheus.targets import targets_for

BIN = Path(sys.executable).parent
LAB = "demo"
MANAGERS, WORKERS = 3, 2
TOKEN = re.compile(r"Join (workers|managers): +swarmd join --token (\S+) (\S+)")


def sm(*args: str, check: bool = True) -> str:
    result = subprocess.run([str(BIN / "swarm-machine"), *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"swarm-machine {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def on(machine: str, *argv: str, check: bool = True) -> str:
    return sm("ssh", machine, "--", *argv, check=check)


def start_swarmd(machine: str, registry: str, *args: str) -> Path:
    """swarmd in the background inside `machine`; returns its log file."""
    info = json.loads(sm("inspect", machine))
    state = Path(info["state_dir"]) / "swarmd"
    state.mkdir(parents=True, exist_ok=True)
    log = state.parent / "swarmd.log"
    # `run` starts a node again from its state dir, addresses and name included.
    naming = "" if args[0] == "run" else f" --advertise-addr {info['address']} --hostname {machine}"
    command = (
        f"exec {BIN / 'swarmd'} {' '.join(args)} -d {state}{naming}"
        f" --listen-metrics {info['address']}:9100 > {log} 2>&1"
    )
    subprocess.Popen(
        [str(BIN / "swarm-machine"), "ssh", machine, "--", "sh", "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={"SHOAL_INSECURE_REGISTRIES": registry, "PATH": "/usr/bin:/bin"},
    )
    return log


def program_pid(program: str, argument: str) -> int:
    """The process running `program` (named in its first two arguments: a Python script
    runs as `python …/program`) with `argument` among its arguments."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            named = any(part.endswith(program.encode()) for part in cmdline[:2])
            if named and argument.encode() in cmdline:
                return int(entry.name)
    raise SystemExit(f"no {program} running with {argument}")


def wait_for(log: Path, pattern: str, seconds: float = 60) -> re.Match[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if log.exists() and (match := re.search(pattern, log.read_text())):
            return match
        time.sleep(0.1)
    raise SystemExit(f"swarmd did not come up ({pattern!r} not in {log}):\n{log.read_text()}")


def swarmctl(*args: str) -> str:
    socket = Path(json.loads(sm("inspect", f"{LAB}-node1"))["state_dir"]) / "swarmd/swarmd.sock"
    return on(f"{LAB}-node1", str(BIN / "swarmctl"), "-s", str(socket), *args)


def main() -> None:
    status = json.loads(sm("lab", "status", LAB, "--format", "json"))
    if status["state"] != "down":
        raise SystemExit(f"lab {LAB} is already up: `make demo-down` first")
    status = json.loads(
        sm("lab", "up", "--name", LAB, "--machines", str(MANAGERS + WORKERS), "--format", "json")
    )
    registry = status["registry"]
    machines = [m["name"] for m in status["machines"]]
    print(f"lab {LAB}: machines {', '.join(machines)}; registry {registry}")
    log = start_swarmd(machines[0], registry, "init")
    wait_for(log, r"serving on")
    tokens = {kind: (token, address) for kind, token, address in TOKEN.findall(log.read_text())}
    for machine in machines[1:MANAGERS]:
        token, address = tokens["managers"]
        wait_for(start_swarmd(machine, registry, "join", "--token", token, address), r"serving on")
    for machine in machines[MANAGERS:]:
        token, address = tokens["workers"]
        joined = start_swarmd(machine, registry, "join", "--token", token, address)
        wait_for(joined, r"session \S+ open")
    print(swarmctl("node", "ls"))
    print("building the app's images from Debian packages (cached after the first time)...")
    seed_demo_images(LAB, registry.rsplit(":", 1)[0])
    print(swarmctl("network", "create", "--driver", "overlay", "demo-net"))
    print(swarmctl("service", "create", "--name", "redis", "--network", "demo-net",
                   f"{registry}/demo/redis:latest"))  # fmt: skip
    print(swarmctl("service", "create", "--name", "web", "--replicas", "5", "--network",
                   "demo-net", "--publish", "4000:80", f"{registry}/demo/web:latest"))  # fmt: skip
    image = f"{registry}/busybox:latest"
    hello = swarmctl(
        "service", "create", "--name", "hello", "--replicas", "1",
        "--publish", "mode=host,published=8080,target=80",
        image, "httpd", "-f", "-p", "80", "-h", "/var/www",
    )  # fmt: skip
    print(hello)
    print(swarmctl("service", "ps", "web"))
    show_app(machines)
    tasks = json.loads(swarmctl("service", "ps", "hello", "--format", "json"))
    task = next(t for t in tasks if t.get("status", {}).get("state") == "RUNNING")
    nodes = json.loads(swarmctl("node", "ls", "--format", "json"))
    host = next(n["description"]["hostname"] for n in nodes if n["id"] == task["node_id"])
    address = json.loads(sm("inspect", host))["address"]
    other = next(m for m in machines if m != host)
    page = on(other, "busybox", "wget", "-qO-", f"http://{address}:8080/")
    print(f"from {other}: GET http://{address}:8080/ (service hello on {host}) ->\n{page}")
    show_prometheus(machines, expected_running=7)
    print("Remove it all with: make demo-down")


def show_app(machines: list[str], seconds: float = 120) -> None:
    """GET port 4000 of every machine (from the next one) until each answers: the page of
    whichever web task the routing mesh picked, its counter rising."""
    addresses = {m: json.loads(sm("inspect", m))["address"] for m in machines}
    for index, machine in enumerate(machines):
        client = machines[(index + 1) % len(machines)]
        url = f"http://{addresses[machine]}:4000/"
        deadline = time.monotonic() + seconds
        while True:
            page = on(client, "timeout", "5", "busybox", "wget", "-qO-", url, check=False)
            if "Visits:" in page:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer {client} within {seconds:.0f} s")
            time.sleep(0.5)
        print(f"from {client}: GET {url} -> {' '.join(re.sub(r'<[^>]+>', ' ', page).split())}")


def show_prometheus(machines: list[str], expected_running: int) -> None:
    """Prometheus inside the first machine scrapes every swarmd; ask it about running tasks."""
    lab = Lab()
    prometheus = LabPrometheus(lab.machine(machines[0]))
    prometheus.start(targets_for(lab.machine(name) for name in machines))
    query = 'sum(shoal_agent_tasks{state="running"})'
    deadline = time.monotonic() + 30
    value = None
    while time.monotonic() < deadline and value != expected_running:
        value = prometheus.api.value(query)
        time.sleep(0.5)
    up = prometheus.api.value("sum(up)")
    print(f"Prometheus on {machines[0]}:9090: {up} of {len(machines)} nodes up; {query} = {value}")


if __name__ == "__main__":
    main()
