"""Helpers shared by the raft tests: node credentials from a test CA, free loopback ports,
and store writes that create a task.

Plain code without pytest: tests/integration/manager/raft/raft_node.py, a program of its
own, imports it too.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from manager.ca.certificates import create_csr, generate_node_key
from manager.ca.client import NodeCredentials
from manager.ca.cluster_ca import ClusterCA
from manager.ca.roles import Role
from manager.ca.root_ca import RootCA
from manager.store import WriteTx, new_id
from shoal.v1 import objects_pb2


def node_credentials(ca: ClusterCA, node_id: str, role: Role = Role.MANAGER) -> NodeCredentials:
    """A new key and a certificate issued by `ca` for `node_id` in `role` (a manager's by
    default)."""
    key = generate_node_key()
    certificate = ca.issue(create_csr(key), node_id, role)
    return NodeCredentials(key, certificate, RootCA(ca.root.certificate))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free when asked."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_task(name: str = "") -> tuple[str, Callable[[WriteTx], None]]:
    """A task id and a transaction function that creates it."""
    task = objects_pb2.Task(id=new_id())
    task.annotations.name = name

    def create(tx: WriteTx) -> None:
        tx.create(task)

    return task.id, create
