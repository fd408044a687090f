"""Every kind of service flag, through the real CLI, into the ServiceSpec sent to Control."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.v1 import specs_pb2, types_pb2
from tests.unit.swarmctl.conftest import Harness

S = 1_000_000_000


def created_spec(swarmctl: Harness, *flags: str) -> specs_pb2.ServiceSpec:
    result = swarmctl.run("service", "create", "--detach", "--name", "web", *flags, "busybox:1")
    assert result.code == 0, result.err
    spec: specs_pb2.ServiceSpec = swarmctl.fake.requests[-1].spec
    return spec


CASES: list[tuple[list[str], Any, Any]] = [
    (["--replicas", "3"], lambda s: s.replicated_service.replicas, 3),
    (["--mode", "global"], lambda s: s.HasField("global_service"), True),
    (["--env", "A=1", "-e", "B=2"], lambda s: list(s.task.container.env), ["A=1", "B=2"]),
    (
        ["--label", "tier=web", "-l", "x"],
        lambda s: dict(s.annotations.labels),
        {"tier": "web", "x": ""},
    ),
    (
        ["--constraint", "node.role==worker"],
        lambda s: list(s.task.placement.constraints),
        ["node.role==worker"],
    ),
    (
        ["--placement-pref", "spread=node.labels.zone"],
        lambda s: s.task.placement.preferences[0].spread.spread_descriptor,
        "node.labels.zone",
    ),
    (["--replicas-max-per-node", "2"], lambda s: s.task.placement.max_replicas, 2),
    (["--reserve-cpu", "0.5"], lambda s: s.task.resources.reservations.nano_cpus, S // 2),
    (["--limit-cpu", "2"], lambda s: s.task.resources.limits.nano_cpus, 2 * S),
    (["--limit-cpu", "0"], lambda s: s.task.resources.limits.nano_cpus, 0),  # no limit
    (["--reserve-memory", "64m"], lambda s: s.task.resources.reservations.memory_bytes, 64 << 20),
    (["--limit-memory", "1g"], lambda s: s.task.resources.limits.memory_bytes, 1 << 30),
    (
        ["--restart-condition", "on-failure"],
        lambda s: s.task.restart.condition,
        types_pb2.RestartPolicy.ON_FAILURE,
    ),
    (["--restart-delay", "1m30s"], lambda s: s.task.restart.delay.seconds, 90),
    (["--restart-max-attempts", "4"], lambda s: s.task.restart.max_attempts, 4),
    (["--restart-window", "2h"], lambda s: s.task.restart.window.seconds, 7200),
    (["--update-parallelism", "2"], lambda s: s.update.parallelism, 2),
    (["--update-delay", "10s"], lambda s: s.update.delay.seconds, 10),
    (
        ["--update-failure-action", "rollback"],
        lambda s: s.update.failure_action,
        types_pb2.UpdateConfig.ROLLBACK,
    ),
    (["--update-monitor", "250ms"], lambda s: s.update.monitor.nanos, 250_000_000),
    (["--update-max-failure-ratio", "0.25"], lambda s: s.update.max_failure_ratio, 0.25),
    (
        ["--update-order", "start-first"],
        lambda s: s.update.order,
        types_pb2.UpdateConfig.START_FIRST,
    ),
    (["--rollback-parallelism", "3"], lambda s: s.rollback.parallelism, 3),
    (["--rollback-delay", "1s"], lambda s: s.rollback.delay.seconds, 1),
    (
        ["--rollback-failure-action", "continue"],
        lambda s: s.rollback.failure_action,
        types_pb2.UpdateConfig.CONTINUE,
    ),
    (["--rollback-monitor", "5s"], lambda s: s.rollback.monitor.seconds, 5),
    (["--rollback-max-failure-ratio", "1"], lambda s: s.rollback.max_failure_ratio, 1.0),
    (
        ["--rollback-order", "stop-first"],
        lambda s: s.rollback.order,
        types_pb2.UpdateConfig.STOP_FIRST,
    ),
    (
        ["--publish", "8080:80"],
        lambda s: (s.endpoint.ports[0].published_port, s.endpoint.ports[0].target_port),
        (8080, 80),
    ),
    (
        ["-p", "mode=host,53:53/udp"],
        lambda s: (s.endpoint.ports[0].publish_mode, s.endpoint.ports[0].protocol),
        (types_pb2.PortConfig.HOST, types_pb2.PortConfig.UDP),
    ),
    (
        ["-p", "published=8443,target=443,protocol=tcp"],
        lambda s: (s.endpoint.ports[0].published_port, s.endpoint.ports[0].target_port),
        (8443, 443),
    ),
    (
        ["-p", "80"],
        lambda s: (s.endpoint.ports[0].published_port, s.endpoint.ports[0].target_port),
        (0, 80),
    ),
    (
        ["--mount", "type=bind,source=/srv,target=/data,readonly"],
        lambda s: (
            s.task.container.mounts[0].type,
            s.task.container.mounts[0].source,
            s.task.container.mounts[0].target,
            s.task.container.mounts[0].readonly,
        ),
        (types_pb2.Mount.BIND, "/srv", "/data", True),
    ),
    (
        ["--mount", "type=tmpfs,target=/tmp,tmpfs-size=64m,tmpfs-mode=1777"],
        lambda s: (
            s.task.container.mounts[0].tmpfs_options.size_bytes,
            s.task.container.mounts[0].tmpfs_options.mode,
        ),
        (64 << 20, 0o1777),
    ),
    (
        ["--mount", "type=volume,src=data,dst=/var/lib/data"],
        lambda s: (s.task.container.mounts[0].type, s.task.container.mounts[0].source),
        (types_pb2.Mount.VOLUME, "data"),
    ),
    (["--network", "backend"], lambda s: s.task.networks[0].target, "backend"),
    (["--hostname", "h1"], lambda s: s.task.container.hostname, "h1"),
    (["--workdir", "/app"], lambda s: s.task.container.dir, "/app"),
    (["--user", "1000:1000"], lambda s: s.task.container.user, "1000:1000"),
    (["--stop-grace-period", "30s"], lambda s: s.task.container.stop_grace_period.seconds, 30),
]


@pytest.mark.parametrize(
    ("flags", "read", "expected"), CASES, ids=[c[0][0] + c[0][1] for c in CASES]
)
def test_each_flag_lands_in_the_spec(
    swarmctl: Harness, flags: list[str], read: Any, expected: Any
) -> None:
    assert read(created_spec(swarmctl, *flags)) == expected


def test_image_and_command(swarmctl: Harness) -> None:
    result = swarmctl.run("service", "create", "-d", "--name", "web", "busybox:1", "httpd", "-f")
    assert result.code == 0, result.err
    spec = swarmctl.fake.requests[-1].spec
    assert spec.task.container.image == "busybox:1"
    assert list(spec.task.container.args) == ["httpd", "-f"]
    assert spec.replicated_service.replicas == 1
    result = swarmctl.run("service", "create", "-d", "--name", "w2", "--image", "b:2", "sleep", "9")
    assert result.code == 0, result.err
    spec = swarmctl.fake.requests[-1].spec
    assert (spec.task.container.image, list(spec.task.container.args)) == ("b:2", ["sleep", "9"])


BAD: list[tuple[list[str], str]] = [
    (["--update-delay", "5x"], "invalid duration '5x'"),
    (["--limit-memory", "lots"], "invalid size 'lots'"),
    (["--reserve-cpu", "half"], "invalid CPU count 'half'"),
    (["--limit-cpu", "nan"], "invalid CPU count 'nan': must be a number 0 or more"),
    (["--limit-memory", "99999999t"], "invalid size '99999999t': more than 8 EiB"),
    (["--stop-grace-period", "9999999h"], "invalid duration '9999999h': longer than"),
    (["--publish", "80:99999"], "invalid --publish '80:99999'"),
    (["--publish", "80:80/icmp"], "unknown protocol 'icmp'"),
    (["--publish", "mode=sideways,80"], "cannot use 'mode=sideways'"),
    (["--mount", "type=bind,target=/x"], "a bind mount needs a source"),
    (["--mount", "type=tmpfs,source=a,target=/x"], "a tmpfs mount takes no source"),
    (["--mount", "type=volume,src=a"], "no target"),
    (["--placement-pref", "pack=node.id"], "invalid --placement-pref"),
    (["--label", "=v"], "invalid --label '=v'"),
    (["--env", "=v"], "invalid --env '=v'"),
    (["--replicas", "-1"], "invalid --replicas -1"),
    (["--update-max-failure-ratio", "2"], "must be 0 to 1"),
    (["--mode", "global", "--replicas", "2"], "--replicas cannot be used with a global service"),
]


@pytest.mark.parametrize(("flags", "message"), BAD, ids=[b[0][0] for b in BAD])
def test_bad_flag_values_are_one_line_errors_and_send_nothing(
    swarmctl: Harness, flags: list[str], message: str
) -> None:
    result = swarmctl.run("service", "create", "-d", "--name", "web", *flags, "busybox:1")
    assert result.code == 1
    assert result.err.startswith("swarmctl: error: ") and result.err.count("\n") == 1
    assert message in result.err
    assert swarmctl.fake.requests == []


def test_click_level_errors_are_one_line_too(swarmctl: Harness) -> None:
    result = swarmctl.run("service", "create", "--replicas", "many", "busybox:1")
    assert result.code == 2
    assert result.err.startswith("swarmctl: error: ") and result.err.count("\n") == 1
    assert "'many' is not a valid integer" in result.err


def test_missing_image(swarmctl: Harness) -> None:
    result = swarmctl.run("service", "create", "-d", "--name", "web")
    assert result.code == 1 and "an image is required" in result.err
