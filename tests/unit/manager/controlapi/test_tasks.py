"""Tasks through a real Control server: get, list filters, remove."""

from __future__ import annotations

import grpc

from shoal.v1 import control_pb2, objects_pb2, types_pb2
from tests.unit.manager.controlapi.helpers import Control, refused, service_spec, task


async def test_get_list_filters_and_remove(control: Control) -> None:
    web = (
        await control.stub.CreateService(
            control_pb2.CreateServiceRequest(spec=service_spec("web", replicas=2))
        )
    ).service
    db = (
        await control.stub.CreateService(control_pb2.CreateServiceRequest(spec=service_spec("db")))
    ).service
    web1 = task(web, slot=1, node_id="n1")
    web1.annotations.labels["canary"] = "yes"
    web2 = task(web, slot=2, node_id="n2", desired=types_pb2.SHUTDOWN)
    db1 = task(db, slot=1, node_id="n1")
    await control.put(web1, web2, db1)

    got = await control.stub.GetTask(control_pb2.GetTaskRequest(task_id=web1.id))
    assert got.task == control.get(objects_pb2.Task, web1.id)

    async def ids(**filters: object) -> set[str]:
        request = control_pb2.ListTasksRequest(
            filters=control_pb2.ListTasksRequest.Filters(**filters)  # type: ignore[arg-type]
        )
        return {t.id for t in (await control.stub.ListTasks(request)).tasks}

    assert await ids() == {web1.id, web2.id, db1.id}
    assert await ids(service_ids=[web.id]) == {web1.id, web2.id}
    assert await ids(node_ids=["n1"]) == {web1.id, db1.id}
    assert await ids(service_ids=[web.id], node_ids=["n1"]) == {web1.id}
    assert await ids(desired_states=[types_pb2.SHUTDOWN]) == {web2.id}
    assert await ids(names=["web.2"]) == {web2.id}
    assert await ids(names=[f"db.1.{db1.id}"]) == {db1.id}
    assert await ids(name_prefixes=["web."]) == {web1.id, web2.id}
    assert await ids(id_prefixes=[db1.id[:8]]) == {db1.id}
    assert await ids(labels={"canary": ""}) == {web1.id}
    assert await ids(service_ids=["nope"]) == set()

    await control.stub.RemoveTask(control_pb2.RemoveTaskRequest(task_id=web2.id))
    assert control.get(objects_pb2.Task, web2.id) is None
    await refused(
        control.stub.GetTask(control_pb2.GetTaskRequest(task_id=web2.id)),
        grpc.StatusCode.NOT_FOUND,
    )
    await refused(
        control.stub.RemoveTask(control_pb2.RemoveTaskRequest(task_id=web2.id)),
        grpc.StatusCode.NOT_FOUND,
    )
    await refused(
        control.stub.RemoveTask(control_pb2.RemoveTaskRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "task_id: must be set",
    )
