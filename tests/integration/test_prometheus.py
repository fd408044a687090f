"""A real Prometheus inside a lab machine scrapes the swarmd of every machine (issue 5)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.netns_driver import Machine
from deploy.prometheus.api import PrometheusAPI
from deploy.prometheus.errors import PrometheusError
from deploy.prometheus.server import LabPrometheus
from deploy.prometheus.targets import METRICS_PORT, targets_for, write_targets
from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import (
    Daemon,
    SwarmCluster,
    create,
    nodes,
    ok,
    real_swarm,
    tasks,
)
from tests.polling import until


class MeteredCluster(SwarmCluster):
    """swarmd serving /metrics on its machine's lab address, port 9100, on every machine."""

    def _start(self, machine: Machine, *args: str) -> Daemon:
        metrics = f"{machine.record.ip}:{METRICS_PORT}"
        return super()._start(machine, *args, "--listen-metrics", metrics)


@pytest.fixture
def cluster(make_lab: Callable[[int], LabHandle], tmp_path: Path) -> Iterator[MeteredCluster]:
    """One manager (with its own agent) and two workers."""
    cluster = MeteredCluster(make_lab(3), tmp_path)
    try:
        real_swarm(cluster, managers=1)
        yield cluster
    finally:
        cluster.stop_all()


@pytest.fixture
def prometheus(cluster: MeteredCluster) -> Iterator[PrometheusAPI]:
    server = LabPrometheus(cluster.lab.machines[0])
    try:
        server.start(targets_for(cluster.lab.machines))
        yield server.api
    finally:
        server.stop()


RUNNING_ON_AGENTS = 'sum(shoal_agent_tasks{state="running"})'
RUNNING_BY_MANAGER = 'sum(shoal_manager_tasks{state="running"})'


def by_machine(api: PrometheusAPI, promql: str) -> dict[str, float]:
    return {s.labels["machine"]: s.value for s in api.query(promql)}


def until_value(api: PrometheusAPI, promql: str, expected: float, what: str) -> None:
    until(lambda: api.value(promql), what, holds=lambda value: value == expected)


def until_by_machine(
    api: PrometheusAPI, promql: str, expected: dict[str, float], what: str
) -> None:
    until(lambda: by_machine(api, promql), what, holds=lambda found: found == expected)


def test_prometheus_scrapes_every_node_and_follows_running_tasks(
    cluster: MeteredCluster, prometheus: PrometheusAPI
) -> None:
    machines = cluster.lab.machines
    manager = machines[0]
    names = {m.name for m in machines}

    # Every swarmd is a target, and up.
    until_by_machine(prometheus, "up", dict.fromkeys(names, 1.0), "every target up")
    # Agent and engine metrics on every node, manager metrics from the one manager.
    assert set(by_machine(prometheus, "shoal_agent_assignments")) == names
    assert set(by_machine(prometheus, "shoal_runtime_container_starts_total")) == names
    until_by_machine(
        prometheus, "shoal_raft_leader == 1", {manager.name: 1.0}, "the manager as raft leader"
    )
    # Manager metrics come from managers only: a worker does not even load the manager.
    for series in ("shoal_raft_term", "shoal_raft_commit_index", "shoal_manager_tasks"):
        assert set(by_machine(prometheus, f"count by (machine) ({series})")) == {manager.name}
    until_value(prometheus, "sum(shoal_dispatcher_sessions)", 3, "3 agent sessions")
    until_value(prometheus, 'sum(shoal_manager_nodes{state="ready"})', 3, "3 nodes ready")

    image = f"{cluster.lab.registry}/busybox:latest"
    web = create(cluster, manager, "web", 3, image, "httpd", "-f", "-p", "80", "-h", "/var/www")
    hostnames = {n["id"]: n["hostname"] for n in nodes(cluster, manager)}

    def running_per_machine() -> Counter[str]:
        return Counter(
            hostnames[t["node_id"]]
            for t in tasks(cluster, manager, web)
            if t.get("status", {}).get("state") == "RUNNING"
        )

    for replicas in (3, 5, 1):
        if replicas != 3:
            ok(cluster, manager, "service", "scale", "--detach", f"{web}={replicas}")
        until_value(prometheus, RUNNING_ON_AGENTS, replicas, f"agents: {replicas} running")
        until_value(prometheus, RUNNING_BY_MANAGER, replicas, f"manager: {replicas} running")
        # The agents' gauges say where they run, as the manager's task list does.
        scraped = by_machine(prometheus, 'shoal_agent_tasks{state="running"} > 0')
        assert scraped == {m: float(n) for m, n in running_per_machine().items()}

    assert prometheus.value("sum(shoal_manager_services)") == 1
    assert (prometheus.value("sum(shoal_runtime_container_starts_total)") or 0) >= 5
    assert (prometheus.value("sum(shoal_runtime_pull_bytes_total)") or 0) > 0


def test_prometheus_starts_once_stops_cleanly_and_refuses_bad_targets(
    make_lab: Callable[[int], LabHandle],
) -> None:
    machine = make_lab(1).machines[0]
    server = LabPrometheus(machine)
    try:
        with pytest.raises(PrometheusError, match="not an IP address and port"):
            server.start({machine.name: "nowhere"})
        assert not server.run_dir.exists()  # refused before anything was made

        server.start(targets_for([machine]))
        pid = server.pid()
        assert pid is not None and machine.contains(pid)
        assert (server.run_dir / "data").is_dir()  # its storage, under the machine's state dir
        # Its only target: the machine's own swarmd port (nothing listens there: up is 0).
        until_by_machine(server.api, "up", {machine.name: 0.0}, "one target scraped")
        # Targets rewritten while it runs are scraped: here Prometheus itself, on loopback.
        write_targets(server.targets_file, {"itself": f"127.0.0.1:{server.port}"})
        until_by_machine(server.api, "up", {"itself": 1.0}, "only the new target")
        with pytest.raises(PrometheusError, match="already runs"):
            server.start(targets_for([machine]))
        with pytest.raises(PrometheusError, match="parse error"):
            server.api.query("up ==")

        # Another process (`make demo-down`, a second demo run) finds and stops it too.
        LabPrometheus(machine).stop()
        assert server.pid() is None and not machine.contains(pid)
        assert not server.run_dir.exists()
        with pytest.raises(PrometheusError, match="did not answer"):
            server.api.query("up")
    finally:
        server.stop()
