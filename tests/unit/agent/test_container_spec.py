"""A task's ContainerSpec (shoal.v1) as the runtime's ContainerSpec, field by field."""

from __future__ import annotations

from typing import Any

import pytest

from agent.container_spec import container_name, runtime_spec
from agent.errors import TaskSpecError
from runtime.container.cgroups import Limits
from runtime.container.spec import Mount
from runtime.errors import ContainerError
from shoal.v1 import objects_pb2, specs_pb2, types_pb2
from tests.unit.agent.builders import attached, overlay_network, task

M = types_pb2.Mount
P = types_pb2.PortConfig


def translated(t: objects_pb2.Task, image_config: dict[str, Any] | None = None) -> Any:
    return runtime_spec(t, "node-1", image_config or {})


@pytest.mark.parametrize(
    ("fields", "attribute", "expected"),
    [
        # Docker/SwarmKit: command replaces the ENTRYPOINT, args replace CMD.
        ({}, "entrypoint", None),
        ({}, "command", ()),
        ({"command": ("httpd",)}, "entrypoint", ("httpd",)),
        ({"command": ("httpd",)}, "command", ()),
        ({"args": ("-f", "-p", "80")}, "entrypoint", None),
        ({"args": ("-f", "-p", "80")}, "command", ("-f", "-p", "80")),
        ({"command": ("sh", "-c"), "args": ("exit 3",)}, "command", ("exit 3",)),
        ({"env": ["A=1", "B=two"]}, "env", ("A=1", "B=two")),
        ({"dir": "/srv"}, "workdir", "/srv"),
        ({"user": "1000:1000"}, "user", "1000:1000"),
        ({"hostname": "box"}, "hostname", "box"),
        ({"tty": True}, "tty", True),
        ({"open_stdin": True}, "stdin_open", True),
        ({}, "stop_signal", "SIGTERM"),
        ({"stop_signal": "SIGQUIT"}, "stop_signal", "SIGQUIT"),
        ({"stop_signal": "hup"}, "stop_signal", "SIGHUP"),
        ({"stop_signal": "9"}, "stop_signal", "9"),
        ({}, "stop_timeout", 10.0),
        ({"grace": 2.5}, "stop_timeout", 2.5),
        ({"grace": 0}, "stop_timeout", 0.0),
        ({}, "network", "bridge"),
        ({}, "image", "busybox"),
        ({}, "name", "web.1.t1"),
        ({}, "limits", Limits()),
        (
            {"mounts": [M(type=M.BIND, source="/srv/data", target="/data", readonly=True)]},
            "mounts",
            (Mount("bind", "/data", "/srv/data", True),),
        ),
        (
            {"mounts": [M(type=M.VOLUME, source="cache", target="/cache")]},
            "mounts",
            (Mount("volume", "/cache", "cache"),),
        ),
        (
            {
                "mounts": [
                    M(
                        type=M.TMPFS,
                        target="/run",
                        tmpfs_options=M.TmpfsOptions(size_bytes=1 << 20, mode=0o1777),
                    )
                ]
            },
            "mounts",
            (Mount("tmpfs", "/run", tmpfs_size=1 << 20),),
        ),
    ],
)
def test_translation_table(fields: dict[str, Any], attribute: str, expected: Any) -> None:
    assert getattr(translated(task("t1", **fields)), attribute) == expected


def test_labels_carry_the_task_and_win_over_the_users() -> None:
    spec = translated(task("t1", labels={"app": "web", "com.shoal.task.id": "forged"}))
    assert spec.labels == {
        "app": "web",
        "com.shoal.task.id": "t1",
        "com.shoal.task.name": "web.1.t1",
        "com.shoal.service.id": "svc-web",
        "com.shoal.service.name": "web",
        "com.shoal.node.id": "node-1",
    }


def test_resource_limits() -> None:
    t = task("t1")
    t.spec.resources.limits.nano_cpus = 500_000_000
    t.spec.resources.limits.memory_bytes = 64 << 20
    t.spec.resources.reservations.memory_bytes = 32 << 20  # the scheduler's, not a limit
    assert translated(t).limits == Limits(memory_bytes=64 << 20, nano_cpus=500_000_000)


def test_host_mode_ports_are_published_ingress_ones_are_not() -> None:
    t = task("t1")
    t.endpoint.ports.extend(
        [
            P(target_port=80, published_port=8080, publish_mode=P.HOST),
            P(protocol=P.UDP, target_port=53, published_port=5353, publish_mode=P.HOST),
            P(target_port=443, published_port=30443, publish_mode=P.INGRESS),
            P(target_port=9000, published_port=0, publish_mode=P.HOST),
        ]
    )
    assert translated(t).ports == ("8080:80/tcp", "5353:53/udp")


def test_stop_signal_of_the_image_applies_when_the_task_sets_none() -> None:
    image = {"config": {"StopSignal": "SIGWINCH"}}
    assert translated(task("t1"), image).stop_signal == "SIGWINCH"
    assert translated(task("t1", stop_signal="SIGINT"), image).stop_signal == "SIGINT"


@pytest.mark.parametrize(
    ("slot", "node", "name", "expected"),
    [(3, "node-1", "", "web.3.t1"), (0, "node-9", "", "web.node-9.t1"), (1, "n", "own", "own")],
)
def test_container_names_as_swarm(slot: int, node: str, name: str, expected: str) -> None:
    t = task("t1", slot=slot)
    t.node_id = node
    t.annotations.name = name
    assert container_name(t) == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"read_only": True}, "not supported by this node's runtime yet: read_only"),
        ({"groups": ["wheel"]}, "not supported by this node's runtime yet: groups"),
        (
            {"hosts": ["10.0.0.1 db"], "secrets": [specs_pb2.SecretReference(secret_id="s")]},
            "not supported by this node's runtime yet: hosts, secrets",
        ),
        (
            {"healthcheck": types_pb2.HealthConfig(test=["CMD", "true"])},
            "not supported by this node's runtime yet: healthcheck",
        ),
        ({"stop_signal": "SIGNOPE"}, "invalid stop signal 'SIGNOPE'"),
        ({"stop_signal": "99"}, "invalid stop signal '99'"),
        (
            {"mounts": [M(type=M.VOLUME, target="/data")]},
            "mount at /data: anonymous volumes are not supported, name the volume",
        ),
        (
            {
                "mounts": [
                    M(
                        type=M.BIND,
                        source="/a",
                        target="/b",
                        bind_options=M.BindOptions(propagation=M.BindOptions.RSHARED),
                    )
                ]
            },
            "mount at /b: only rprivate bind propagation is supported",
        ),
        (
            {
                "mounts": [
                    M(
                        type=M.VOLUME,
                        source="v",
                        target="/v",
                        volume_options=M.VolumeOptions(driver_config=types_pb2.Driver(name="nfs")),
                    )
                ]
            },
            "mount at /v: volume driver 'nfs' is not supported",
        ),
        (
            {"mounts": [M(type=M.TMPFS, target="/t", tmpfs_options=M.TmpfsOptions(mode=0o700))]},
            "mount at /t: tmpfs mode 700 is not supported",
        ),
        ({"image": ""}, "task t1 names no image"),
    ],
)
def test_what_cannot_be_run_is_refused_by_name(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskSpecError) as caught:
        translated(task("t1", **fields))
    assert str(caught.value) == message


def test_sctp_ports_are_refused() -> None:
    t = task("t1")
    t.endpoint.ports.append(
        P(protocol=P.SCTP, target_port=1, published_port=2, publish_mode=P.HOST)
    )
    with pytest.raises(TaskSpecError, match="published port 2/SCTP: only tcp and udp"):
        translated(t)


def test_a_task_without_a_container_is_refused() -> None:
    with pytest.raises(TaskSpecError, match="task t9 has no container spec"):
        translated(objects_pb2.Task(id="t9"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"env": ["NOVALUE"]}, "invalid environment variable 'NOVALUE'"),
        ({"dir": "relative"}, "working directory must be absolute"),
        ({"mounts": [M(type=M.BIND, source="rel", target="/x")]}, "bind mount source"),
        ({"grace": -1}, "stop timeout cannot be negative"),
    ],
)
def test_the_runtimes_own_checks_apply(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ContainerError, match=message):
        translated(task("t1", **fields))


def test_overlay_networks_become_the_first_interfaces_and_the_bridge_the_way_out() -> None:
    spec = runtime_spec(
        attached(task(), overlay_network("n1"), overlay_network("n2", "4098")),
        "node-1",
        {},
        "192.0.2.10",
    )
    assert [(o.network_id, o.vni, o.address, o.vtep, o.name) for o in spec.overlays] == [
        ("n1", 4097, "10.0.1.2", "192.0.2.10", "name-n1"),
        ("n2", 4098, "10.0.1.3", "192.0.2.10", "name-n2"),
    ]
    assert (spec.overlays[0].subnet, spec.overlays[0].gateway) == ("10.0.1.0/24", "10.0.1.1")
    assert spec.network == "bridge"
    assert translated(task()).overlays == ()


def test_internal_overlays_only_mean_no_way_out() -> None:
    internal = runtime_spec(
        attached(task(), overlay_network("n1", internal=True)), "node-1", {}, "192.0.2.10"
    )
    assert internal.network == "none" and len(internal.overlays) == 1
    mixed = runtime_spec(
        attached(task(), overlay_network("n1", internal=True), overlay_network("n2")),
        "node-1",
        {},
        "192.0.2.10",
    )
    assert mixed.network == "bridge"


@pytest.mark.parametrize(
    ("network", "data_address", "message"),
    [
        (overlay_network("n1", vni=""), "192.0.2.10", "name-n1 is not allocated"),
        (overlay_network("n1", driver="macvlan"), "192.0.2.10", "driver 'macvlan'"),
        (overlay_network("n1"), "", "no address for overlay traffic"),
    ],
)
def test_overlays_that_cannot_be_joined_are_refused(
    network: objects_pb2.Network, data_address: str, message: str
) -> None:
    with pytest.raises(TaskSpecError, match=message):
        runtime_spec(attached(task(), network), "node-1", {}, data_address)
