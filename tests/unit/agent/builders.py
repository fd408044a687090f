"""Tasks for agent tests."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from shoal.v1 import objects_pb2, specs_pb2, types_pb2

TS = types_pb2.TaskState


def task(
    task_id: str = "t1",
    image: str = "busybox",
    *,
    desired: types_pb2.TaskState.ValueType = TS.RUNNING,
    state: types_pb2.TaskState.ValueType = TS.ASSIGNED,
    service: str = "web",
    slot: int = 1,
    command: tuple[str, ...] = (),
    args: tuple[str, ...] = (),
    grace: float | None = None,
    **container: object,
) -> objects_pb2.Task:
    spec = specs_pb2.ContainerSpec(
        image=image,
        command=list(command),
        args=list(args),
        **container,  # type: ignore[arg-type]
    )
    if grace is not None:
        spec.stop_grace_period.CopyFrom(Duration(seconds=int(grace), nanos=int(grace % 1 * 1e9)))
    return objects_pb2.Task(
        id=task_id,
        service_id=f"svc-{service}",
        slot=slot,
        node_id="node-1",
        spec=specs_pb2.TaskSpec(container=spec),
        service_annotations=types_pb2.Annotations(name=service),
        desired_state=desired,
        status=types_pb2.TaskStatus(state=state),
    )


def with_desired(
    t: objects_pb2.Task,
    desired: types_pb2.TaskState.ValueType,
    state: types_pb2.TaskState.ValueType | None = None,
) -> objects_pb2.Task:
    """A copy of `t` with a new desired state (and the manager's view of its state)."""
    copy = objects_pb2.Task()
    copy.CopyFrom(t)
    copy.desired_state = desired
    if state is not None:
        copy.status.state = state
    return copy


def overlay_network(
    network_id: str, vni: str = "4097", internal: bool = False, driver: str = ""
) -> objects_pb2.Network:
    network = objects_pb2.Network(id=network_id)
    network.spec.annotations.name = f"name-{network_id}"
    network.spec.internal = internal
    network.spec.driver_config.name = driver
    if vni:
        network.driver_state.options["vni"] = vni
    network.ipam.configs.add(subnet="10.0.1.0/24", gateway="10.0.1.1")
    return network


def attached(t: objects_pb2.Task, *networks: objects_pb2.Network) -> objects_pb2.Task:
    for number, network in enumerate(networks, 2):
        t.networks.add(network=network, addresses=[f"10.0.1.{number}/24"])
    return t
