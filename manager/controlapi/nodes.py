"""Nodes: get, list, update (availability, labels, desired role, membership), remove."""

from __future__ import annotations

from manager.controlapi.backend import Backend
from manager.controlapi.errors import FailedPrecondition, InvalidArgument, ObjectNotFound
from manager.controlapi.filters import matches, node_name
from manager.controlapi.requests import required_id, required_spec, required_version
from manager.controlapi.validation import check_node_spec
from manager.store import ReadTx, VersionConflict, WriteTx
from shoal.v1 import control_pb2, objects_pb2, specs_pb2, types_pb2


def _get(tx: ReadTx, node_id: str) -> objects_pb2.Node:
    node = tx.get(objects_pb2.Node, node_id)
    if node is None:
        raise ObjectNotFound(f"node {node_id!r} not found")
    return node


async def _with_raft_view(backend: Backend, nodes: list[objects_pb2.Node]) -> None:
    """Managers' leader flag and reachability as this manager's raft sees them now."""
    view = await backend.raft_view()
    if view is None:
        return
    for node in nodes:
        status = node.manager_status
        if status.raft_addr:
            status.leader = node.id == view.leader
            status.reachability = (
                types_pb2.RaftMemberStatus.REACHABLE
                if node.id in view.reachable
                else types_pb2.RaftMemberStatus.UNREACHABLE
            )


async def get_node(
    backend: Backend, request: control_pb2.GetNodeRequest
) -> control_pb2.GetNodeResponse:
    node_id = required_id("node_id", request.node_id)
    node = backend.read(lambda tx: _get(tx, node_id))
    await _with_raft_view(backend, [node])
    return control_pb2.GetNodeResponse(node=node)


async def list_nodes(
    backend: Backend, request: control_pb2.ListNodesRequest
) -> control_pb2.ListNodesResponse:
    filters = request.filters

    def wanted(node: objects_pb2.Node) -> bool:
        if filters.roles and node.role not in filters.roles:
            return False
        if filters.memberships and node.spec.membership not in filters.memberships:
            return False
        return matches(filters, node.id, (node_name(node),), node.spec.annotations.labels)

    nodes = [n for n in backend.read(lambda tx: tx.list(objects_pb2.Node)) if wanted(n)]
    await _with_raft_view(backend, nodes)
    return control_pb2.ListNodesResponse(nodes=nodes)


async def update_node(
    backend: Backend, request: control_pb2.UpdateNodeRequest
) -> control_pb2.UpdateNodeResponse:
    node_id = required_id("node_id", request.node_id)
    version = required_version("node_version", request.node_version)
    required_spec(request)
    check_node_spec(request.spec)
    spec = request.spec

    def update(tx: WriteTx) -> objects_pb2.Node:
        node = _get(tx, node_id)
        if node.meta.version != version:
            raise VersionConflict("node", node_id, node.meta.version, version)
        if (
            node.spec.membership == specs_pb2.NodeSpec.ACCEPTED
            and spec.membership == specs_pb2.NodeSpec.PENDING
        ):
            raise InvalidArgument("spec.membership", "an accepted node cannot go back to PENDING")
        if spec.desired_role == types_pb2.WORKER and _is_manager(node):
            _check_not_last_manager(tx, node)
        node.spec.CopyFrom(spec)
        return tx.update(node)

    return control_pb2.UpdateNodeResponse(node=await backend.write_object(update))


def _is_manager(node: objects_pb2.Node) -> bool:
    return types_pb2.MANAGER in (node.role, node.spec.desired_role)


def _check_not_last_manager(tx: ReadTx, node: objects_pb2.Node) -> None:
    """Demoting must leave a manager that stays one; raft itself refuses a demotion that
    would lose quorum when the role change is carried out."""
    others = [
        n
        for n in tx.find(objects_pb2.Node, "role", types_pb2.MANAGER)
        if n.id != node.id and n.spec.desired_role == types_pb2.MANAGER
    ]
    if not others:
        raise FailedPrecondition(
            f"node {node.id!r} is the last manager of the cluster: it cannot be demoted"
        )


async def remove_node(
    backend: Backend, request: control_pb2.RemoveNodeRequest
) -> control_pb2.RemoveNodeResponse:
    node_id = required_id("node_id", request.node_id)
    node = backend.read(lambda tx: _get(tx, node_id))
    if _is_manager(node) and await backend.raft_member(node):
        raise FailedPrecondition(
            f"node {node_id!r} is a manager and a member of the raft cluster: "
            "demote it to a worker before removing it"
        )
    if not request.force and node.status.state == types_pb2.NodeStatus.READY:
        raise FailedPrecondition(
            f"node {node_id!r} is READY (not down): stop it first, or remove it with force"
        )

    def remove(tx: WriteTx) -> None:
        # The checks above hold for the version they read; a node changed since (promoted,
        # come back up) is refused as out of sequence.
        tx.delete(objects_pb2.Node, node_id, node.meta.version)

    await backend.write(remove)
    return control_pb2.RemoveNodeResponse()
