"""The peers of the node's overlay networks, programmed once both they and the network's
allocation (from a task) are known, and forgotten with the network."""

from __future__ import annotations

from agent.discovery import return_paths
from agent.executor import Executor
from agent.networks import OverlayNetworks
from shoal.v1 import dispatcher_pb2, objects_pb2
from tests.unit.agent.builders import attached, overlay_network, task
from tests.unit.agent.fake_engine import FakeEngine


def peers(network_id: str, *where: tuple[str, str]) -> dispatcher_pb2.NetworkEndpoints:
    """The network's endpoints: this node's own task, and one on another node per pair."""
    message = dispatcher_pb2.NetworkEndpoints(network_id=network_id)
    message.endpoints.add(
        task_id="own", address="10.0.1.2", node_address="192.0.2.10", node_id="node-1"
    )
    for number, (address, node_address) in enumerate(where):
        message.endpoints.add(
            task_id=f"t{number}", address=address, node_address=node_address, node_id=f"n{number}"
        )
    return message


def on(network_id: str) -> objects_pb2.Task:
    return attached(task(), overlay_network(network_id))


async def test_peers_wait_for_the_networks_allocation_then_follow_updates(
    engine: FakeEngine, executor: Executor
) -> None:
    overlays = OverlayNetworks(executor, "node-1", "192.0.2.10")
    await overlays.apply([peers("n1", ("10.0.1.3", "192.0.2.11"))], [], complete=True)
    assert engine.overlay_peers == {}  # no task has brought n1's VNI and subnet yet
    await overlays.learn([on("n1")])
    assert engine.overlay_peers == {"n1": [[("10.0.1.3", "192.0.2.11")]]}
    await overlays.learn([on("n1")])  # known already: nothing programmed again
    await overlays.apply([peers("n1", ("10.0.1.3", "192.0.2.11"), ("10.0.1.4", "192.0.2.12"))], [])
    assert engine.overlay_peers["n1"][-1] == [
        ("10.0.1.3", "192.0.2.11"),
        ("10.0.1.4", "192.0.2.12"),
    ]
    assert len(engine.overlay_peers["n1"]) == 2


async def test_a_network_left_behind_is_emptied(engine: FakeEngine, executor: Executor) -> None:
    overlays = OverlayNetworks(executor, "node-1", "192.0.2.10")
    await overlays.learn([on("n1"), on("n2")])
    await overlays.apply(
        [peers("n1", ("10.0.1.3", "192.0.2.11")), peers("n2", ("10.0.1.5", "192.0.2.11"))],
        [],
        complete=True,
    )
    await overlays.apply([], ["n1"])  # removed by an increment
    assert engine.overlay_peers["n1"][-1] == []
    await overlays.apply([], [], complete=True)  # a new session's set without n2
    assert engine.overlay_peers["n2"][-1] == []


def endpoint(
    message: dispatcher_pb2.NetworkEndpoints, task_id: str, address: str, **fields: object
) -> None:
    message.endpoints.add(task_id=task_id, address=address, node_id="n2", **fields)


def test_names_and_virtual_ips_of_the_running_tasks(executor: Executor) -> None:
    overlays = OverlayNetworks(executor, "node-1", "192.0.2.10")
    front = dispatcher_pb2.NetworkEndpoints(network_id="front")
    for task_id, address, running in (("a", "10.0.1.3", True), ("b", "10.0.1.4", True)):
        endpoint(
            front, task_id, address, service_name="web", task_name=f"web.1.{task_id}",
            vip="10.0.1.100", aliases=["www"], running=running,
        )  # fmt: skip
    endpoint(front, "c", "10.0.1.5", service_name="web", vip="10.0.1.100", task_name="web.3.c")
    endpoint(front, "d", "10.0.1.6", service_name="db", task_name="db.1.d", running=True)
    back = dispatcher_pb2.NetworkEndpoints(network_id="back")
    endpoint(back, "e", "10.0.2.3", service_name="web", vip="10.0.2.100", running=True)
    overlays._endpoints = {"front": front, "back": back}  # as apply() keeps them

    names = overlays.names(["front", "back"])
    assert names.lookup("web") == ["10.0.1.100"]  # the first network's virtual IP wins
    assert names.lookup("www") == ["10.0.1.100"]
    assert sorted(names.lookup("tasks.web") or []) == ["10.0.1.3", "10.0.1.4"]
    assert names.lookup("db") == ["10.0.1.6"]  # no virtual IP: round robin over its tasks
    assert names.lookup("web.1.a") == ["10.0.1.3"]
    assert names.lookup("web.3.c") is None  # not running yet
    assert overlays.names(["back"]).lookup("web") == ["10.0.2.100"]
    assert overlays.backends(["front", "back"]) == {
        "10.0.1.100": ["10.0.1.3", "10.0.1.4"],
        "10.0.2.100": ["10.0.2.3"],
    }


async def test_the_sandboxes_are_the_endpoints_that_are_no_task(executor: Executor) -> None:
    overlays = OverlayNetworks(executor, "node-1", "192.0.2.10")
    ingress = peers("ingress", ("10.255.0.9", "192.0.2.11"))
    ingress.endpoints.add(address="10.255.0.2", node_address="192.0.2.10", node_id="node-1")
    ingress.endpoints.add(address="10.255.0.3", node_address="192.0.2.11", node_id="n0")
    await overlays.apply([ingress, peers("n1", ("10.0.1.3", "192.0.2.11"))], [], complete=True)
    assert overlays.sandboxes("ingress") == ["10.255.0.2", "10.255.0.3"]
    assert overlays.sandboxes("n1") == []
    assert overlays.sandboxes("unknown") == []
    # A task on n1 then the ingress network: its second interface leads back to them.
    assert return_paths(overlays, ["n1", "ingress"]) == {"eth1": ["10.255.0.2", "10.255.0.3"]}
    assert return_paths(overlays, ["n1"]) == {}
