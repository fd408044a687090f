"""Test-only program: one manager's raft + store, driven over a unix socket.

Run with sys.executable. Requests and answers are JSON lines; see `Node.handle`. Each
write creates a Task labelled key=<key>, so counting tasks per key shows whether a write
was lost (0) or applied twice (2).

Its manager certificate (for `--node-id`) it issues itself from the test CA in `--ca-dir`
(`write_test_ca`): a test-only shortcut for what `swarmd join` gets from the managers.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Run as a program, only this folder is on sys.path: the project root makes `tests` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from manager.ca.cluster_ca import ClusterCA
from manager.ca.join_tokens import JoinTokens
from manager.ca.root_ca import RootCA
from manager.raft import Raft, RaftConfig
from manager.store import Store, StoreError, new_id
from manager.store.snapshot import encode_snapshot
from shoal.v1 import objects_pb2, store_pb2
from tests.raft_support import node_credentials

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CLUSTER_ID = "cluster_id"


def write_test_ca(directory: Path, ca: ClusterCA | None = None) -> ClusterCA:
    """Keep a test ClusterCA (root certificate and key, cluster id) in `directory`, for
    raft_node processes to issue their own certificates from (a new CA if none given)."""
    ca = ca or ClusterCA.initialize()
    directory.mkdir(parents=True, exist_ok=True)
    ca.root.save(directory / CA_CERT, directory / CA_KEY)
    (directory / CLUSTER_ID).write_text(ca.cluster_id)
    return ca


def load_test_ca(directory: Path) -> ClusterCA:
    root = RootCA.load(directory / CA_CERT, directory / CA_KEY)
    cluster_id = (directory / CLUSTER_ID).read_text().strip()
    if not cluster_id:
        raise ValueError(f"{directory / CLUSTER_ID} holds no cluster id")
    return ClusterCA(cluster_id, root, JoinTokens.generate(root.digest))


def parse_peers(value: str) -> dict[str, str]:
    """`id=host:port,id=host:port` as {id: host:port}."""
    peers: dict[str, str] = {}
    for item in filter(None, value.split(",")):
        node_id, sep, address = item.partition("=")
        if not sep or not node_id or not address:
            raise ValueError(f"peer {item!r} is not id=host:port")
        peers[node_id] = address
    return peers


def format_peers(peers: Mapping[str, str]) -> str:
    return ",".join(f"{node_id}={address}" for node_id, address in peers.items())


def task_for(key: str, pad: int) -> objects_pb2.Task:
    task = objects_pb2.Task(id=new_id())
    task.annotations.labels["key"] = key
    if pad:
        task.annotations.labels["pad"] = "x" * pad
    return task


class Node:
    def __init__(self, raft: Raft, store: Store) -> None:
        self.raft = raft
        self.store = store

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.pop("op")
        try:
            answer: dict[str, Any] = await getattr(self, f"op_{op}")(**request)
            return answer
        except StoreError as error:
            answer = {"error": type(error).__name__, "message": str(error)}
            leader = getattr(error, "leader", None)
            if leader:
                answer["leader"] = leader
            return answer
        except Exception as error:
            return {"error": type(error).__name__, "message": str(error)}

    async def op_status(self) -> dict[str, Any]:
        status = await self.raft.status()
        return {
            **status.__dict__,
            "leadership": self.raft.leadership.current.__dict__,
            "store_index": self.store.index,
        }

    async def op_put(
        self, key: str, proposer: str = "", seq: int = 0, pad: int = 0
    ) -> dict[str, Any]:
        actions = store_pb2.StoreActions(proposer_id=proposer, sequence=seq)
        actions.actions.add(kind=store_pb2.StoreAction.CREATE, task=task_for(key, pad))
        return {"index": await self.raft.propose(actions)}

    async def op_counts(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for task in self.store.view(lambda tx: tx.list(objects_pb2.Task)):
            key = task.annotations.labels.get("key")
            if key is not None:
                counts[key] = counts.get(key, 0) + 1
        return {"counts": counts, "store_index": self.store.index}

    async def op_digest(self) -> dict[str, Any]:
        image = self.store.capture()
        index, image.index = image.index, 0  # leaders' barrier entries move the index
        data = encode_snapshot(image)
        return {
            "digest": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "store_index": index,
            "objects": sum(len(objs) for objs in image.objects.values()),
        }

    async def op_fill(self, total_bytes: int, object_bytes: int) -> dict[str, Any]:
        """Add Configs of `object_bytes` until they hold `total_bytes`, a few per entry."""
        per_batch = max(1, (1 << 20) // object_bytes)
        count = (total_bytes + object_bytes - 1) // object_bytes

        async def batch(start: int, size: int) -> None:
            def write(tx: Any) -> None:
                for i in range(start, start + size):
                    config = objects_pb2.Config(id=new_id())
                    config.spec.annotations.name = f"fill-{i}-{config.id}"
                    config.spec.data = os.urandom(object_bytes // 2).hex().encode()
                    tx.create(config)

            await self.store.update(write)

        await asyncio.gather(
            *(batch(s, min(per_batch, count - s)) for s in range(0, count, per_batch))
        )
        return {"objects": count}

    async def op_barrier(self) -> dict[str, Any]:
        return {"index": await self.raft.read_barrier()}

    async def op_add_member(self, node_id: str, address: str) -> dict[str, Any]:
        await self.raft.add_member(node_id, address)
        return {"ok": True}

    async def op_remove_member(self, node_id: str, force: bool = False) -> dict[str, Any]:
        await self.raft.remove_member(node_id, force)
        return {"ok": True}

    async def op_transfer_leadership(self, to: str | None = None) -> dict[str, Any]:
        return {"leader": await self.raft.transfer_leadership(to)}

    async def op_bench(self, count: int, inflight: int, pad: int = 0) -> dict[str, Any]:
        """`count` committed writes with `inflight` at a time, timed here."""
        next_key = iter(range(count))

        async def writer() -> None:
            for i in next_key:
                actions = store_pb2.StoreActions()
                actions.actions.add(
                    kind=store_pb2.StoreAction.CREATE, task=task_for(f"bench-{i}", pad)
                )
                await self.raft.propose(actions)

        start = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(inflight)))
        return {"seconds": time.perf_counter() - start, "count": count}


async def serve(args: argparse.Namespace) -> int:
    store = Store()
    config = RaftConfig(
        node_id=args.node_id,
        address=args.address,
        data_dir=Path(args.data_dir),
        peers=parse_peers(args.peers),
        bootstrap=args.bootstrap,
        compaction_min_entries=args.compaction_min_entries,
    )
    credentials = node_credentials(load_test_ca(Path(args.ca_dir)), args.node_id)
    # Where every lab node listens: what a manager's store Node objects tell its raft.
    address_book = parse_peers(args.address_book)
    raft = Raft(config, store, credentials, addresses=address_book.get)
    store.proposer = raft
    await raft.start()
    node = Node(raft, store)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer = await node.handle(json.loads(line))
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    control = Path(args.control)
    control.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(client, path=str(control), limit=1 << 24)
    failure = await raft.wait_stopped()
    server.close()
    if failure is not None:
        print(f"raft_node: {failure}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--ca-dir", required=True, help="the test CA (write_test_ca)")
    parser.add_argument("--peers", default="", help="id=host:port,...: the other managers")
    parser.add_argument(
        "--address-book",
        default="",
        help="id=host:port,...: where nodes listen, as the store's Node objects would say",
    )
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--control", required=True)
    parser.add_argument(
        "--bootstrap",
        action="store_true",
        help="with an empty data dir, found a group of this node and --peers; else join",
    )
    parser.add_argument("--compaction-min-entries", type=int, default=5000)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # RAFT_NODE_LOG=DEBUG: the raft layer's debug lines too (its streams ending...).
    logging.getLogger("manager.raft").setLevel(os.environ.get("RAFT_NODE_LOG", "INFO"))
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
