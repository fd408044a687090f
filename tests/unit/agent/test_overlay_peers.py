"""The peers of the node's overlay networks, programmed once both they and the network's
allocation (from a task) are known, and forgotten with the network."""

from __future__ import annotations

from agent.executor import Executor
from agent.overlay_peers import OverlayPeers
from shoal.v1 import dispatcher_pb2, objects_pb2
from tests.unit.agent.builders import attached, overlay_network, task
from tests.unit.agent.fake_engine import FakeEngine


def peers(network_id: str, *where: tuple[str, str]) -> dispatcher_pb2.NetworkPeers:
    message = dispatcher_pb2.NetworkPeers(network_id=network_id)
    for number, (address, node_address) in enumerate(where):
        message.peers.add(task_id=f"t{number}", address=address, node_address=node_address)
    return message


def on(network_id: str) -> objects_pb2.Task:
    return attached(task(), overlay_network(network_id))


async def test_peers_wait_for_the_networks_allocation_then_follow_updates(
    engine: FakeEngine, executor: Executor
) -> None:
    overlays = OverlayPeers(executor, "192.0.2.10")
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
    overlays = OverlayPeers(executor, "192.0.2.10")
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
