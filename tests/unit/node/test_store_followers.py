"""What every manager keeps following in its store (node.json's peers, the cluster CA's join
tokens) survives the store being restored from the leader's snapshot, which ends every
watch: a follower that caught up by a snapshot used to crash its swarmd."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from manager import cluster_state
from manager.ca.cluster_ca import ClusterCA
from manager.store import LocalProposer, Store, WriteTx
from node.identity import Identity, NodeState
from node.manager_node import track_peers
from shoal.v1 import objects_pb2
from tests.polling import until_async


def manager_node(node_id: str, raft_addr: str) -> objects_pb2.Node:
    node = objects_pb2.Node(id=node_id)
    node.manager_status.raft_addr = raft_addr
    node.manager_status.addr = raft_addr.replace(":4243", ":4242")
    return node


def local_store() -> Store:
    store = Store()
    store.proposer = LocalProposer(store, proposer_id="test")
    return store


async def put(store: Store, *objects: objects_pb2.Node | objects_pb2.Cluster) -> None:
    def write(tx: WriteTx) -> None:
        for obj in objects:
            tx.create(obj)

    await store.update(write)


def saved_peers(identity: Identity) -> dict[str, str]:
    peers: dict[str, str] = json.loads((identity.state_dir / "node.json").read_text())["raft_peers"]
    return peers


async def test_node_json_peers_follow_the_store_through_a_snapshot_restore(
    tmp_path: Path,
) -> None:
    store = local_store()
    identity = Identity(tmp_path)
    state = NodeState(node_id="m1", role="swarm-manager", cluster_id="c", hostname="h")
    await put(store, manager_node("m1", "10.0.0.1:4243"), manager_node("m2", "10.0.0.2:4243"))
    tracking = asyncio.create_task(track_peers(store, identity, state))
    try:
        await until_async(lambda: saved_peers(identity), "m2 saved", retry_on=(OSError,))
        # The leader's snapshot: m2 gone, m3 there.
        other = local_store()
        await put(other, manager_node("m1", "10.0.0.1:4243"), manager_node("m3", "10.0.0.3:4243"))
        store.restore(other.capture())
        await until_async(
            lambda: saved_peers(identity),
            "the restored managers saved",
            holds=lambda peers: peers == {"m3": "10.0.0.3:4243"},
        )
        await put(store, manager_node("m4", "10.0.0.4:4243"))  # and it goes on following
        await until_async(
            lambda: saved_peers(identity),
            "a later manager saved",
            holds=lambda peers: set(peers) == {"m3", "m4"},
        )
        assert not tracking.done()
    finally:
        tracking.cancel()


async def test_the_cluster_ca_follows_the_store_through_a_snapshot_restore() -> None:
    store = local_store()
    ca = ClusterCA.initialize()
    await put(store, cluster_state.new_cluster(ca, cluster_state.default_spec()))
    following = asyncio.create_task(cluster_state.follow_cluster_ca(store, ca))
    try:
        rotated = ClusterCA.initialize()  # other tokens, same cluster id below
        cluster = cluster_state.new_cluster(rotated, cluster_state.default_spec())
        cluster.id = store.view(cluster_state.current_cluster).id  # type: ignore[union-attr]
        other = local_store()
        await put(other, cluster)
        store.restore(other.capture())
        await until_async(
            lambda: ca.join_tokens.worker,
            "the restored join tokens taken",
            holds=lambda token: token == rotated.join_tokens.worker,
        )
        assert not following.done()
    finally:
        following.cancel()
