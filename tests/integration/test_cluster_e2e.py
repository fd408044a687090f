"""The whole stack: swarmd managers and workers with real agents and real containers, and
overlay networks between them."""

from __future__ import annotations

import json
import re
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common import namespaces
from deploy.demo_images import seed_demo_images
from deploy.netns_driver import Machine
from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import (
    SHOAL,
    SwarmCluster,
    create,
    listed,
    ok,
    real_swarm,
    running,
    swarmctl,
    tasks,
    until_running,
)
from tests.polling import until


@pytest.fixture
def swarm(make_lab: Callable[[int], LabHandle], tmp_path: Path) -> Iterator[SwarmCluster]:
    cluster = SwarmCluster(make_lab(3), tmp_path)
    try:
        yield real_swarm(cluster, managers=1)  # a manager (with its own agent), 2 workers
    finally:
        cluster.stop_all()


def containers(swarm: SwarmCluster, machine: Machine) -> dict[str, int]:
    """Running containers of the node's engine: name -> pid."""
    code, out = swarm.shoal(machine, "ps", "--format", "json")
    assert code == 0, out
    return {c["Name"]: c["State"]["Pid"] for c in json.loads(out or "[]")}


def test_replicas_run_as_containers_and_survive_a_worker_swarmd_kill(
    swarm: SwarmCluster,
) -> None:
    manager, worker = swarm.lab.machines[0], swarm.lab.machines[1]
    image = f"{swarm.lab.registry}/busybox:latest"
    web = create(swarm, manager, "web", 6, image, "httpd", "-f", "-p", "80", "-h", "/var/www")

    found = until_running(swarm, manager, web, 6, "6 running containers")
    assert sorted(Counter(t["node_id"] for t in found).values()) == [2, 2, 2]
    before = containers(swarm, worker)
    assert len(before) == 2 and all(name.startswith("web.") for name in before)

    swarm.kill(worker)  # kill -9 of the worker's swarmd: its containers keep running
    assert containers(swarm, worker) == before
    swarm.restart(worker, ready=r"session \S+ open")
    # Re-adopted, not restarted.
    until_running(swarm, manager, web, 6, "6 running after the restart")
    assert containers(swarm, worker) == before

    ok(swarm, manager, "service", "scale", "--detach", f"{web}=2")
    until_running(swarm, manager, web, 2, "scaled down to 2")
    until(
        lambda: sum(len(containers(swarm, m)) for m in swarm.lab.machines),
        "only 2 containers left running",
        holds=lambda count: count == 2,
    )


def container(task: dict[str, Any], service: str = "web") -> str:
    return f"{service}.{task['slot']}.{task['id']}"


def machine_of(swarm: SwarmCluster, manager: Machine, task: dict[str, Any]) -> Machine:
    """The lab machine whose node runs `task`."""
    hostnames = {
        str(n["id"]): n["description"]["hostname"]
        for n in listed(swarm, manager, "node", "ls", "--format", "json")
    }
    return next(m for m in swarm.lab.machines if m.name == hostnames[task["node_id"]])


def overlay_address(task: dict[str, Any], network_id: str) -> str:
    (found,) = [n for n in task["networks"] if n["network"]["id"] == network_id]
    return str(found["addresses"][0]).split("/")[0]


def test_tasks_on_two_machines_reach_each_other_by_address_name_and_virtual_ip(
    swarm: SwarmCluster,
) -> None:
    """Over an overlay network, from inside a task: another task's address and name,
    `tasks.<service>` and the service's name (its virtual IP, load-balanced over both
    tasks); all of it through a kill -9 of the node's swarmd; names following a scale;
    another network out of reach, its tasks and its virtual IPs."""
    manager = swarm.lab.machines[0]
    image = f"{swarm.lab.registry}/busybox:latest"
    network_id = ok(swarm, manager, "network", "create", "--driver", "overlay", "net1").out.strip()
    ok(
        swarm, manager, "service", "create", "--detach", "--name", "web", "--replicas", "2",
        "--network", "net1", "--constraint", "node.role==worker", "--replicas-max-per-node",
        "1", "--restart-delay", "0s", image, "httpd", "-f", "-p", "8080", "-h", "/etc",
    )  # fmt: skip
    found = until_running(swarm, manager, "web", 2, "2 web tasks on the workers")
    (one, other) = found
    assert one["node_id"] != other["node_id"]
    client, server = (machine_of(swarm, manager, t) for t in (one, other))
    target = overlay_address(other, network_id)
    assert overlay_address(one, network_id) != target
    code, hostname = swarm.shoal(server, "exec", container(other), "cat", "/etc/hostname")
    assert code == 0
    # The peers reach the client's node with its assignments: poll until the other task
    # answers over the overlay.
    fetch = ("timeout", "5", "wget", "-q", "-O", "-", f"http://{target}:8080/hostname")
    until(
        lambda: swarm.shoal(client, "exec", container(one), *fetch),
        f"{container(one)} fetching {target}:8080 over net1",
        holds=lambda result: result == (0, hostname),
        timeout_s=30,
    )
    own_code, own_hostname = swarm.shoal(client, "exec", container(one), "cat", "/etc/hostname")
    assert own_code == 0

    def lookup(name: str) -> tuple[int, str]:
        return swarm.shoal(client, "exec", container(one), "nslookup", name)

    both = until(
        lambda: lookup("tasks.web"),
        "tasks.web to list both tasks",
        holds=lambda result: (
            result[0] == 0
            and all(overlay_address(t, network_id) in result[1] for t in (one, other))
        ),
        timeout_s=30,
    )
    assert "127.0.0.11" in both[1]  # the embedded resolver answered
    code, answer = lookup(container(other))
    assert code == 0 and target in answer
    code, answer = lookup("web")  # the service's virtual IP, not a task's address
    assert code == 0 and target not in answer and overlay_address(one, network_id) not in answer
    loop = "for i in $(seq 16); do timeout 5 wget -q -O - http://web:8080/hostname; done"
    code, out = swarm.shoal(client, "exec", container(one), "sh", "-c", loop)
    assert code == 0
    assert set(out.split()) == {hostname.strip(), own_hostname.strip()}  # both tasks served

    # kill -9 of the client's swarmd: the data plane needs no agent; the restarted one
    # adopts the container, answers its DNS again and makes nothing twice.
    before = containers(swarm, client)
    swarm.kill(client)
    assert swarm.shoal(client, "exec", container(one), *fetch) == (0, hostname)
    swarm.restart(client, ready=r"session \S+ open")
    until(
        lambda: lookup("tasks.web"),
        "the restarted agent's resolver answering tasks.web",
        holds=lambda result: result[0] == 0 and target in result[1],
        timeout_s=30,
    )
    assert containers(swarm, client) == before
    code, inspected = swarm.shoal(client, "inspect", container(one))
    assert code == 0
    state = swarm.state_dir(client) / "engine" / "network" / "overlay" / network_id / "state.json"
    recorded = json.loads(state.read_text())["endpoints"]
    assert [e["container_id"] for e in recorded] == [json.loads(inspected)[0]["Id"]]

    # Names follow the tasks as a service scales; a network the task is not on is out of
    # reach, by name and by address.
    ok(
        swarm, manager, "service", "create", "--detach", "--name", "api", "--replicas", "1",
        "--network", "net1", "--restart-delay", "0s", image, "httpd", "-f", "-p", "8080",
    )  # fmt: skip
    until(
        lambda: lookup("tasks.api"),
        "tasks.api answering",
        holds=lambda result: result[0] == 0 and result[1].count("Address") >= 2,
        timeout_s=30,
    )
    ok(swarm, manager, "service", "scale", "--detach", "api=3")
    api = until_running(swarm, manager, "api", 3, "3 api tasks")
    until(
        lambda: lookup("tasks.api"),
        "tasks.api listing 3 tasks",
        holds=lambda result: all(overlay_address(t, network_id) in result[1] for t in api),
        timeout_s=30,
    )
    net2 = ok(swarm, manager, "network", "create", "--driver", "overlay", "net2").out.strip()
    ok(
        swarm, manager, "service", "create", "--detach", "--name", "db", "--replicas", "1",
        "--network", "net2", "--restart-delay", "0s", image, "httpd", "-f", "-p", "8080",
    )  # fmt: skip
    (db,) = until_running(swarm, manager, "db", 1, "the db task")
    elsewhere = overlay_address(db, net2)
    assert lookup("db")[0] != 0  # not a name of net1
    (db_service,) = listed(swarm, manager, "service", "inspect", "db")
    (vip,) = [v["addr"] for v in db_service["endpoint"]["virtual_ips"] if v["network_id"] == net2]
    for address in (elsewhere, vip.split("/")[0]):  # its task, and its virtual IP
        probe = ("timeout", "3", "wget", "-q", "-O", "-", f"http://{address}:8080/")
        assert swarm.shoal(client, "exec", container(one), *probe)[0] != 0, address


def http_get(machine: Machine, address: str, port: int, path: str) -> str:
    """GET http://address:port/path from inside `machine` (a client of the lab)."""
    sock = namespaces.call_in_netns(
        machine.netns, lambda: socket.create_connection((address, port), timeout=5)
    )
    with sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace").split("\r\n\r\n", 1)[-1]


# A page of busybox httpd saying who asked: the address the task sees its client at.
CLIENT_ADDRESS_CGI = (
    "mkdir -p /www/cgi-bin && cp /etc/hostname /www/hostname"
    " && echo '#!/bin/sh' > /www/cgi-bin/client"
    " && echo 'echo Content-Type: text/plain; echo; echo -n $REMOTE_ADDR' >> /www/cgi-bin/client"
    " && chmod +x /www/cgi-bin/client && exec httpd -f -p 8080 -h /www"
)


def test_a_published_port_answers_on_every_machine_through_the_routing_mesh(
    swarm: SwarmCluster,
) -> None:
    """`--publish published=8080,target=8080` in ingress mode (the default), one task on
    one worker: the port answers on all three machines, those without the task included,
    to a client on any of them; the task sees the client's own address (beyond Docker,
    whose mesh shows it the ingress node's); a killed task's successor takes its place in
    the mesh."""
    manager = swarm.lab.machines[0]
    image = f"{swarm.lab.registry}/busybox:latest"
    ok(
        swarm, manager, "service", "create", "--detach", "--name", "front", "--replicas", "1",
        "--publish", "published=8080,target=8080", "--constraint", "node.role==worker",
        "--restart-delay", "0s", image, "sh", "-c", CLIENT_ADDRESS_CGI,
    )  # fmt: skip
    (task,) = until_running(swarm, manager, "front", 1, "the front task")
    host = machine_of(swarm, manager, task)
    code, hostname = swarm.shoal(host, "exec", f"front.1.{task['id']}", "cat", "/etc/hostname")
    assert code == 0
    for target in swarm.lab.machines:
        client = next(m for m in swarm.lab.machines if m is not target)

        def page(client: Machine = client, target: Machine = target) -> str:
            return http_get(client, target.record.ip, 8080, "/hostname")

        until(
            page,
            f"port 8080 of {target.name} answering {client.name}",
            holds=lambda got: got == hostname,
            retry_on=(OSError,),
            timeout_s=30,
        )
        page_text = http_get(client, target.record.ip, 8080, "/cgi-bin/client")
        seen_as = page_text.split()[-1].strip("[]").removeprefix("::ffff:")  # httpd's v6 form
        assert seen_as == client.record.ip, (target.name, client.name, page_text)

    # The task killed: its successor (restart delay 0) takes over, and the mesh follows.
    assert swarm.shoal(host, "kill", f"front.1.{task['id']}")[0] == 0
    (successor,) = until(
        lambda: running(tasks(swarm, manager, "front")),
        "the killed task's successor running",
        holds=lambda found: len(found) == 1 and found[0]["id"] != task["id"],
        timeout_s=30,
    )
    new_host = machine_of(swarm, manager, successor)
    code, new_hostname = swarm.shoal(
        new_host, "exec", f"front.1.{successor['id']}", "cat", "/etc/hostname"
    )
    assert code == 0 and new_hostname != hostname
    until(
        lambda: http_get(swarm.lab.machines[1], manager.record.ip, 8080, "/hostname"),
        "the mesh sending to the successor",
        holds=lambda got: got == new_hostname,
        retry_on=(OSError,),
        timeout_s=30,
    )


def test_the_flask_and_redis_app_answers_on_every_machine_with_a_rising_counter(
    swarm: SwarmCluster,
) -> None:
    """The classic Docker tutorial app as `make demo` deploys it: `web` (Flask) publishing
    port 4000 through the routing mesh, `redis` beside it on an overlay; every machine
    answers, the counter rises from page to page, and the pages come from several tasks."""
    manager, lab = swarm.lab.machines[0], swarm.lab
    seed_demo_images(lab.name, lab.registry.rsplit(":", 1)[0])
    ok(swarm, manager, "network", "create", "--driver", "overlay", "app")
    ok(
        swarm, manager, "service", "create", "--detach", "--name", "redis", "--network", "app",
        f"{lab.registry}/demo/redis:latest",
    )  # fmt: skip
    ok(
        swarm, manager, "service", "create", "--detach", "--name", "web", "--replicas", "3",
        "--network", "app", "--publish", "4000:80", "--replicas-max-per-node", "1",
        f"{lab.registry}/demo/web:latest",
    )  # fmt: skip
    until_running(swarm, manager, "redis", 1, "the redis task")
    until_running(swarm, manager, "web", 3, "3 web tasks")
    page = re.compile(r"<h3>Hello World!</h3><b>Hostname:</b> (\w+)<br/><b>Visits:</b> (\d+)")
    seen: list[tuple[str, int]] = []
    for _ in range(3):  # rounds
        for index, target in enumerate(swarm.lab.machines):
            client = swarm.lab.machines[(index + 1) % len(swarm.lab.machines)]

            def visit(client: Machine = client, target: Machine = target) -> re.Match[str] | None:
                return page.fullmatch(http_get(client, target.record.ip, 4000, "/"))

            got = until(
                visit,
                f"port 4000 of {target.name} answering {client.name} with a count",
                holds=lambda found: found is not None,
                retry_on=(OSError,),
                timeout_s=60,
            )
            assert got is not None
            seen.append((got.group(1), int(got.group(2))))
    counts = [count for _, count in seen]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), seen  # rising
    assert len({hostname for hostname, _ in seen}) >= 2, seen  # spread over the tasks


def shoal_run(swarm: SwarmCluster, machine: Machine, *args: str) -> tuple[int, str, str]:
    """`shoal run ARGS` on the machine's swarmd engine: exit code, output, errors."""
    env = {
        **swarm.lab.env(machine),
        "SHOAL_ROOT": str(swarm.state_dir(machine) / "engine"),
        "SHOAL_INSECURE_REGISTRIES": swarm.lab.registry,
    }
    proc = machine.popen([SHOAL, "run", *args], env, stdout=-1, stderr=-1, text=True)
    out, err = proc.communicate(timeout=90)
    return proc.returncode, out, err


def test_a_standalone_container_joins_an_attachable_network(swarm: SwarmCluster) -> None:
    """`shoal run --network NAME` on any node: the container gets an address on the
    cluster's attachable overlay, resolves and reaches the services on it, is reachable by
    its own name from their tasks, and gives its address back when it ends (the network
    can then go). A network not made attachable is refused, clearly."""
    manager, other = swarm.lab.machines[0], swarm.lab.machines[1]
    image = f"{swarm.lab.registry}/busybox:latest"
    ok(swarm, manager, "network", "create", "--driver", "overlay", "--attachable", "shared")
    ok(swarm, manager, "network", "create", "--driver", "overlay", "private")
    ok(
        swarm, manager, "service", "create", "--detach", "--name", "api", "--replicas", "1",
        "--network", "shared", "--constraint", "node.role==worker", "--restart-delay", "0s",
        image, "httpd", "-f", "-p", "8080", "-h", "/etc",
    )  # fmt: skip
    (task,) = until_running(swarm, manager, "api", 1, "the api task")
    server = machine_of(swarm, manager, task)
    code, hostname = swarm.shoal(server, "exec", container(task, "api"), "cat", "/etc/hostname")
    assert code == 0

    # From the manager's node (it runs no api task): by the service's name, over VXLAN.
    fetch = "timeout 5 wget -q -O - http://api:8080/hostname"
    code, out, err = shoal_run(
        swarm, manager, "--rm", "--network", "shared", image, "sh", "-c", fetch
    )
    assert (code, out) == (0, hostname), err

    # A detached one, reached by its name from the service's task.
    code, out, err = shoal_run(
        swarm, other, "-d", "--name", "standalone", "--network", "shared", image,
        "httpd", "-f", "-p", "8080", "-h", "/etc",
    )  # fmt: skip
    assert code == 0, err
    code, standalone_hostname = swarm.shoal(other, "exec", "standalone", "cat", "/etc/hostname")
    assert code == 0
    back = ("timeout", "5", "wget", "-q", "-O", "-", "http://standalone:8080/hostname")
    until(
        lambda: swarm.shoal(server, "exec", container(task, "api"), *back),
        "the api task reaching the standalone container by name",
        holds=lambda result: result == (0, standalone_hostname),
        timeout_s=30,
    )
    refused = swarmctl(swarm, manager, "network", "rm", "shared")
    assert refused.code != 0 and "in use" in refused.err, refused  # the attachment holds it

    code, out, err = shoal_run(swarm, manager, "--rm", "--network", "private", image, "true")
    assert code != 0 and "not attachable" in err, (code, err)

    assert swarm.shoal(other, "rm", "-f", "standalone")[0] == 0
    ok(swarm, manager, "service", "rm", "api")
    until(
        lambda: swarmctl(swarm, manager, "network", "rm", "shared"),
        "the network free once its service and containers are gone",
        holds=lambda result: result.code == 0,
        timeout_s=30,
    )


def test_overlapping_subnets_and_taken_ports_are_refused_and_internal_has_no_way_out(
    swarm: SwarmCluster,
) -> None:
    """What a user gets wrong is refused with a reason and leaves nothing: a subnet that
    overlaps another network's, a published port another service holds. A task on an
    `--internal` network reaches nothing outside it; one on a normal overlay reaches the
    outside (here the lab's registry) through its node."""
    manager = swarm.lab.machines[0]
    image = f"{swarm.lab.registry}/busybox:latest"
    ok(swarm, manager, "network", "create", "--subnet", "10.123.0.0/24", "first")
    refused = swarmctl(swarm, manager, "network", "create", "--subnet", "10.123.0.128/25", "x")
    assert refused.code == 1 and "overlap" in refused.err, refused
    assert "x" not in {n["spec"]["annotations"]["name"] for n in listed(
        swarm, manager, "network", "ls", "--format", "json"
    )}  # fmt: skip
    ok(
        swarm, manager, "service", "create", "--detach", "--name", "holder",
        "--publish", "9090:80", image, "httpd", "-f", "-p", "80",
    )  # fmt: skip
    taken = swarmctl(
        swarm, manager, "service", "create", "--detach", "--name", "taker",
        "--publish", "9090:80", image, "httpd", "-f", "-p", "80",
    )  # fmt: skip
    assert taken.code == 1 and "9090" in taken.err, taken
    assert swarmctl(swarm, manager, "service", "inspect", "taker").code != 0

    ok(swarm, manager, "network", "create", "--internal", "closed")
    registry = f"http://{swarm.lab.registry}/v2/"
    for network, reaches_out in (("closed", False), ("first", True)):
        name = f"on-{network}"
        ok(
            swarm, manager, "service", "create", "--detach", "--name", name, "--network",
            network, "--restart-delay", "0s", image, "httpd", "-f", "-p", "8080",
        )  # fmt: skip
        (task,) = until_running(swarm, manager, name, 1, f"the task on {network}")
        host = machine_of(swarm, manager, task)
        probe = ("timeout", "5", "wget", "-q", "-O", "-", registry)
        code, _ = swarm.shoal(host, "exec", container(task, name), *probe)
        assert (code == 0) == reaches_out, (network, code)
