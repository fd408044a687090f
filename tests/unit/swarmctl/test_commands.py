"""Commands against the fake Control: name resolution, tables, JSON, ids, errors, convergence."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from shoal.v1 import control_pb2, objects_pb2, specs_pb2, types_pb2
from swarmctl.cli import main
from tests.unit.swarmctl.conftest import Harness


def add_service(swarmctl: Harness, name: str, replicas: int = 2) -> objects_pb2.Service:
    spec = specs_pb2.ServiceSpec()
    spec.annotations.name = name
    spec.task.container.image = "busybox:1"
    spec.replicated_service.replicas = replicas
    response = swarmctl.fake.CreateService(control_pb2.CreateServiceRequest(spec=spec), None)
    swarmctl.fake.requests.clear()
    service: objects_pb2.Service = response.service
    return service


def test_service_ls_table_json_and_ids(swarmctl: Harness) -> None:
    web = add_service(swarmctl, "web", 3)
    node = swarmctl.fake.add_node("m1")
    swarmctl.fake.add_task(web, 1, types_pb2.RUNNING, node_id=node.id)
    swarmctl.fake.add_task(web, 2, types_pb2.PREPARING, node_id=node.id)
    table = swarmctl.run("service", "ls")
    assert table.code == 0, table.err
    header, row = table.out.splitlines()
    assert header.split() == ["NAME", "MODE", "REPLICAS", "IMAGE", "ID"]
    assert row.split() == ["web", "replicated", "1/3", "busybox:1", web.id]
    as_json = json.loads(swarmctl.run("service", "ls", "--format", "json").out)
    assert [s["spec"]["annotations"]["name"] for s in as_json] == ["web"]
    assert swarmctl.run("service", "ls", "-q").out == f"{web.id}\n"


def test_service_ps_shows_slot_names_hostnames_and_relative_times(swarmctl: Harness) -> None:
    web = add_service(swarmctl, "web")
    node = swarmctl.fake.add_node("worker-1")
    swarmctl.fake.add_task(web, 1, types_pb2.RUNNING, node_id=node.id)
    swarmctl.fake.add_task(web, 2, types_pb2.REJECTED, node_id=node.id)
    task = list(swarmctl.fake.tasks.values())
    task[0].status.timestamp.FromSeconds(int(time.time()) - 5)
    task[1].status.err = "no such image"
    result = swarmctl.run("service", "ps", "web")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "IMAGE"]
    assert "web.1" in lines[1] and "worker-1" in lines[1]
    assert "Running 5 seconds ago" in lines[1] or "Running 6 seconds ago" in lines[1]
    assert "web.2" in lines[2] and "Rejected" in lines[2] and "no such image" in lines[2]


def test_services_resolve_by_name_id_and_unique_prefix(swarmctl: Harness) -> None:
    web = add_service(swarmctl, "web")
    api = add_service(swarmctl, "api")
    assert web.id[:8] != api.id[:8]
    for reference in ("web", web.id, web.id[:8]):
        result = swarmctl.run("service", "inspect", reference)
        assert result.code == 0, result.err
        assert json.loads(result.out)[0]["id"] == web.id
    ambiguous = swarmctl.run("service", "inspect", "svc")  # both ids start with it
    assert ambiguous.code == 1 and "matches 2 services" in ambiguous.err
    missing = swarmctl.run("service", "inspect", "nope")
    assert missing.code == 1
    assert missing.err == "swarmctl: error: no such service: nope\n"


def test_nodes_resolve_by_hostname_and_update_labels_and_availability(swarmctl: Harness) -> None:
    node = swarmctl.fake.add_node("worker-1")
    result = swarmctl.run(
        "node", "update", "worker-1", "--availability", "pause", "--label-add", "zone=a"
    )
    assert result.code == 0, result.err
    assert node.spec.availability == specs_pb2.NodeSpec.PAUSE
    assert dict(node.spec.annotations.labels) == {"zone": "a"}
    assert swarmctl.run("node", "drain", node.id[:8] + node.id[8:]).code == 0
    assert node.spec.availability == specs_pb2.NodeSpec.DRAIN
    assert swarmctl.run("node", "activate", "worker-1").code == 0
    assert node.spec.availability == specs_pb2.NodeSpec.ACTIVE
    assert swarmctl.run("node", "promote", "worker-1").code == 0
    assert node.spec.desired_role == types_pb2.MANAGER
    missing = swarmctl.run("node", "update", "worker-1", "--label-rm", "rack")
    assert missing.code == 1 and "has no label 'rack'" in missing.err
    assert swarmctl.run("node", "update", "worker-1", "--label-rm", "zone").code == 0
    assert dict(node.spec.annotations.labels) == {}


def test_node_ls_marks_the_leader(swarmctl: Harness) -> None:
    leader = swarmctl.fake.add_node("m1", types_pb2.MANAGER)
    leader.manager_status.leader = True
    swarmctl.fake.add_node("w1")
    lines = swarmctl.run("node", "ls").out.splitlines()
    assert lines[0].split()[:4] == ["ID", "HOSTNAME", "ROLE", "STATUS"]
    assert lines[1].split()[1:] == ["m1", "Manager", "Ready", "Active", "Leader"]
    assert lines[2].split()[1:] == ["w1", "Worker", "Ready", "Active"]


def test_scale_update_and_rollback(swarmctl: Harness) -> None:
    web = add_service(swarmctl, "web")
    assert swarmctl.run("service", "scale", "-d", "web=5").code == 0
    assert swarmctl.fake.services[web.id].spec.replicated_service.replicas == 5
    bad = swarmctl.run("service", "scale", "web=five")
    assert bad.code == 1 and "expected SERVICE=REPLICAS" in bad.err
    update = swarmctl.run("service", "update", "-d", "web", "--image", "busybox:2", "--force")
    assert update.code == 0, update.err
    spec = swarmctl.fake.services[web.id].spec
    assert (spec.task.container.image, spec.task.force_update) == ("busybox:2", 1)
    assert spec.replicated_service.replicas == 5  # untouched flags keep their values
    assert swarmctl.run("service", "rollback", "-d", "web").code == 0
    assert swarmctl.fake.requests[-1].rollback == control_pb2.UpdateServiceRequest.PREVIOUS
    assert swarmctl.fake.services[web.id].spec.task.container.image == "busybox:1"


def test_cluster_update_rotates_tokens_and_sets_durations(swarmctl: Harness) -> None:
    result = swarmctl.run(
        "cluster",
        "update",
        "--rotate-join-token",
        "worker",
        "--heartbeat-period",
        "2s",
        "--task-history",
        "3",
        "--cert-expiry",
        "2160h",
    )
    assert result.code == 0, result.err
    request = swarmctl.fake.requests[-1]
    assert request.rotation.worker_join_token and not request.rotation.manager_join_token
    assert request.spec.dispatcher.heartbeat_period.seconds == 2
    assert request.spec.orchestration.task_history_retention_limit == 3
    assert request.spec.ca_config.node_cert_expiry.seconds == 2160 * 3600
    token = json.loads(swarmctl.run("cluster", "inspect").out)["root_ca"]["join_tokens"]["worker"]
    assert token == "SWMTKN-1-a-worker1"


def test_create_waits_for_convergence_and_reports_a_failed_task(swarmctl: Harness) -> None:
    swarmctl.fake.start_state = types_pb2.RUNNING
    done = swarmctl.run("service", "create", "--name", "web", "--replicas", "2", "busybox:1")
    assert done.code == 0, done.err
    assert done.err == "web: 2/2 running\n"
    swarmctl.fake.start_state = types_pb2.FAILED
    failed = swarmctl.run("service", "create", "--name", "bad", "--replicas", "1", "bad")
    assert failed.code == 1
    assert "bad: 0/1 running; task" in failed.err and "failed: FAILED" in failed.err


def test_convergence_gives_up_at_the_deadline(swarmctl: Harness) -> None:
    began = time.monotonic()
    result = swarmctl.run("service", "create", "--name", "web", "--timeout", "0.5", "busybox:1")
    assert result.code == 1
    assert "not converged after 0.5s: web: 0/1 running" in result.err
    assert time.monotonic() - began < 5


def test_a_manager_error_is_one_line(swarmctl: Harness) -> None:
    result = swarmctl.run("service", "create", "-d", "busybox:1")  # no name
    assert result.code == 1
    assert result.err == "swarmctl: error: spec.annotations.name: required\n"


def test_an_unreachable_manager(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["-s", str(tmp_path / "none.sock"), "service", "ls"])
    err = capsys.readouterr().err
    assert exited.value.code == 1
    assert err.startswith(f"swarmctl: error: cannot reach the manager at unix://{tmp_path}")
    assert err.count("\n") == 1


def test_tls_needs_both_flags_and_readable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--tls-dir", str(tmp_path), "node", "ls"])
    assert exited.value.code == 1 and "--tls-dir needs --host" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--host", "127.0.0.1:1", "--tls-dir", str(tmp_path), "node", "ls"])
    err = capsys.readouterr().err
    assert exited.value.code == 1 and f"cannot read {tmp_path}/certificates/root.crt" in err


def test_the_socket_comes_from_the_environment(
    swarmctl: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_service(swarmctl, "web")
    monkeypatch.setenv("SWARMCTL_SOCKET", swarmctl.socket)
    with pytest.raises(SystemExit) as exited:
        main(["service", "ls", "-q"])
    assert exited.value.code == 0
    assert len(swarmctl.capsys.readouterr().out.split()) == 1
