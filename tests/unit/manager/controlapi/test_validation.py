"""Every validation rule, table-driven: a valid spec, one field spoiled, the exact field path
at the start of the message and the problem after it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from manager.controlapi.errors import InvalidArgument
from manager.controlapi.validation import (
    check_cluster_spec,
    check_config_spec,
    check_network_spec,
    check_node_spec,
    check_secret_spec,
    check_service_spec,
)
from shoal.v1 import specs_pb2, types_pb2

Mount = types_pb2.Mount
NEGATIVE_ONE = (1 << 64) - 1  # what a client's -1 becomes in a uint64


def full_service() -> specs_pb2.ServiceSpec:
    """A valid spec using every part the rules look at."""
    spec = specs_pb2.ServiceSpec()
    spec.annotations.name = "web"
    spec.annotations.labels["tier"] = "front"
    spec.replicated_service.replicas = 2
    c = spec.task.container
    c.image = "registry:5000/library/busybox:1.36@sha256:" + "a" * 64
    c.command.extend(["httpd", "-f"])
    c.args.append("-v")
    c.env.extend(["A=1", "EMPTY="])
    c.hostname = "web.local"
    c.dir = "/srv"
    c.user = "1000:1000"
    c.groups.append("audio")
    c.stop_signal = "SIGTERM"
    c.mounts.add(type=Mount.BIND, source="/data", target="/data")
    c.mounts.add(type=Mount.VOLUME, source="vol1", target="/vol")
    tmpfs = c.mounts.add(type=Mount.TMPFS, target="/scratch")
    tmpfs.tmpfs_options.size_bytes = 1 << 20
    tmpfs.tmpfs_options.mode = 0o1777
    c.stop_grace_period.seconds = 10
    c.healthcheck.test.extend(["CMD", "true"])
    c.healthcheck.interval.seconds = 5
    c.healthcheck.retries = 3
    c.hosts.append("10.0.0.1 db db.local")
    c.dns_config.nameservers.append("10.0.0.2")
    c.dns_config.search.append("example.com")
    c.dns_config.options.append("ndots:0")
    c.secrets.add(
        secret_id="s1", file=specs_pb2.FileTarget(name="pw", uid="0", gid="0", mode=0o400)
    )
    c.configs.add(config_id="c1", file=specs_pb2.FileTarget(name="/etc/app.conf"))
    resources = spec.task.resources
    resources.limits.nano_cpus = 2_000_000_000
    resources.limits.memory_bytes = 1 << 30
    resources.reservations.nano_cpus = 1_000_000_000
    resources.reservations.memory_bytes = 1 << 29
    resources.reservations.generic.add(kind="gpu", named_value="GPU-1")
    restart = spec.task.restart
    restart.condition = types_pb2.RestartPolicy.ON_FAILURE
    restart.delay.seconds = 5
    restart.window.seconds = 60
    restart.max_attempts = 3
    placement = spec.task.placement
    placement.constraints.append("node.role==worker")
    placement.preferences.add().spread.spread_descriptor = "node.labels.zone"
    placement.platforms.add(os="linux", architecture="amd64")
    placement.max_replicas = 2
    spec.task.networks.add(target="n1", aliases=["api"], addresses=["10.0.9.5/24"])
    spec.task.log_driver.name = "json-file"
    update = spec.update
    update.parallelism = 2
    update.delay.seconds = 1
    update.failure_action = types_pb2.UpdateConfig.ROLLBACK
    update.monitor.seconds = 10
    update.max_failure_ratio = 0.2
    update.order = types_pb2.UpdateConfig.START_FIRST
    spec.rollback.parallelism = 1
    spec.endpoint.ports.add(target_port=80, published_port=8080)
    spec.endpoint.ports.add(target_port=53, published_port=53, protocol=types_pb2.PortConfig.UDP)
    return spec


Mutation = Callable[[Any], object]


def invalid(field: str, problem: str, mutate: Mutation) -> Any:
    return pytest.param(mutate, field, problem, id=f"{field}: {problem}")


def _set(path: str, value: object) -> Mutation:
    """A mutation setting a dotted attribute path."""

    def mutate(spec: Any) -> None:
        *parents, last = path.split(".")
        target = spec
        for part in parents:
            target = getattr(target, part)
        setattr(target, last, value)

    return mutate


def _c(fn: Callable[[specs_pb2.ContainerSpec], object]) -> Mutation:
    return lambda spec: fn(spec.task.container)


def _mount(number: int, fn: Callable[[types_pb2.Mount], object]) -> Mutation:
    return lambda spec: fn(spec.task.container.mounts[number])


def _big_label_map(spec: Any) -> None:
    spec.annotations.labels.update({f"k{i}": "v" for i in range(257)})


def _shell_with_two_commands(spec: specs_pb2.ServiceSpec) -> None:
    del spec.task.container.healthcheck.test[:]
    spec.task.container.healthcheck.test.extend(["CMD-SHELL", "true", "x"])


def _internal_ingress(spec: specs_pb2.NetworkSpec) -> None:
    spec.attachable = False
    spec.ingress = spec.internal = True


def _both_networks(spec: specs_pb2.ServiceSpec) -> None:
    spec.networks.add(target="n2")


def _no_mode(spec: specs_pb2.ServiceSpec) -> None:
    spec.ClearField("replicated_service")


def _global_with_max_replicas(spec: specs_pb2.ServiceSpec) -> None:
    spec.global_service.SetInParent()


C = "spec.task.container"
SERVICE_CASES = [
    invalid("spec.annotations.name", "must be set", _set("annotations.name", "")),
    invalid("spec.annotations.name", "invalid name 'Web_1'", _set("annotations.name", "Web_1")),
    invalid("spec.annotations.name", "DNS label is 1 to 63", _set("annotations.name", "a" * 64)),
    invalid("spec.annotations.name", "invalid name '-web'", _set("annotations.name", "-web")),
    invalid("spec.annotations.name", "invalid name 'wéb'", _set("annotations.name", "wéb")),
    invalid("spec.annotations.labels", "258 labels, more than the limit of 256", _big_label_map),
    invalid(
        "spec.annotations.labels",
        "a label key is empty",
        lambda s: s.annotations.labels.update({"": "x"}),
    ),
    invalid(
        "spec.annotations.labels['k']",
        "contains the control character '\\x00'",
        lambda s: s.annotations.labels.update({"k": "a\0b"}),
    ),
    invalid(
        "spec.annotations.labels['" + "k" * 80 + "'... (300 characters)] (key)",
        "is 300 characters, more than 255",
        lambda s: s.annotations.labels.update({"k" * 300: "v"}),
    ),
    invalid("spec.task", "must be set", lambda s: s.ClearField("task")),
    invalid("spec.task.container", "must be set", lambda s: s.task.ClearField("container")),
    invalid(
        f"{C}.image",
        "invalid reference 'UPPER': repository name must be lowercase",
        _set("task.container.image", "UPPER"),
    ),
    invalid(f"{C}.image", "must be set", _set("task.container.image", "")),
    invalid(
        f"{C}.image",
        "a sha256 digest has 64 hex digits, not 32",
        _set("task.container.image", "busybox@sha256:" + "a" * 32),
    ),
    invalid(
        f"{C}.image",
        "contains whitespace",
        _set("task.container.image", "busybox:bad tag"),
    ),
    invalid(f"{C}.command[2]", "contains a NUL character", _c(lambda c: c.command.append("a\0"))),
    invalid(
        f"{C}.args[1]",
        "is 200000 characters, more than 131072",
        _c(lambda c: c.args.append("x" * 200_000)),
    ),
    invalid(f"{C}.env[2]", "'=x' is not KEY=value", _c(lambda c: c.env.append("=x"))),
    invalid(
        f"{C}.hostname", "invalid hostname 'bad_host'", _set("task.container.hostname", "bad_host")
    ),
    invalid(f"{C}.dir", "'srv' is not an absolute path", _set("task.container.dir", "srv")),
    invalid(f"{C}.user", "is not user, uid, user:group", _set("task.container.user", "a:b:c")),
    invalid(f"{C}.groups[1]", "is not a group", _c(lambda c: c.groups.append("a b"))),
    invalid(
        f"{C}.stop_signal", "unknown signal 'SIGFOO'", _set("task.container.stop_signal", "SIGFOO")
    ),
    invalid(
        f"{C}.stop_grace_period",
        "must not be negative (got -1s)",
        _set("task.container.stop_grace_period.seconds", -1),
    ),
    invalid(
        f"{C}.stop_grace_period",
        "is not a valid duration",
        _set("task.container.stop_grace_period.nanos", -5),
    ),
    invalid(
        f"{C}.healthcheck.test[0]",
        "'BOGUS' is not one of NONE, CMD, CMD-SHELL",
        _c(lambda c: c.healthcheck.test.__setitem__(0, "BOGUS")),
    ),
    invalid(
        f"{C}.healthcheck.test",
        "CMD-SHELL takes exactly one shell command",
        _shell_with_two_commands,
    ),
    invalid(
        f"{C}.healthcheck.interval",
        "must be 0 (the default) or at least 1ms",
        _c(
            lambda c: c.healthcheck.interval.CopyFrom(
                types_pb2.HealthConfig().interval.__class__(nanos=5)
            )
        ),
    ),
    invalid(
        f"{C}.healthcheck.retries",
        "must not be negative",
        _set("task.container.healthcheck.retries", -1),
    ),
    invalid(f"{C}.hosts[1]", "is not 'IP hostname", _c(lambda c: c.hosts.append("10.0.0.3"))),
    invalid(
        f"{C}.hosts[1]", "'db' is not an IP address", _c(lambda c: c.hosts.append("db 10.0.0.3"))
    ),
    invalid(
        f"{C}.dns_config.nameservers[1]",
        "'dns' is not an IP address",
        _c(lambda c: c.dns_config.nameservers.append("dns")),
    ),
    invalid(
        f"{C}.dns_config.options[1]",
        "contains white space",
        _c(lambda c: c.dns_config.options.append("a b")),
    ),
    invalid(
        f"{C}.secrets[0].secret_id",
        "must be set",
        _c(lambda c: setattr(c.secrets[0], "secret_id", "")),
    ),
    invalid(f"{C}.secrets[0].file", "must be set", _c(lambda c: c.secrets[0].ClearField("file"))),
    invalid(
        f"{C}.secrets[0].file.name",
        "'/etc/pw' must be relative (to /run/secrets)",
        _c(lambda c: setattr(c.secrets[0].file, "name", "/etc/pw")),
    ),
    invalid(
        f"{C}.configs[0].file.name",
        "must not contain '..'",
        _c(lambda c: setattr(c.configs[0].file, "name", "/etc/../shadow")),
    ),
    invalid(
        f"{C}.secrets[0].file.uid",
        "'root' is not a numeric id",
        _c(lambda c: setattr(c.secrets[0].file, "uid", "root")),
    ),
    invalid(
        f"{C}.secrets[0].file.mode",
        "0o1000 is not a permission mode (at most 0o777)",
        _c(lambda c: setattr(c.secrets[0].file, "mode", 0o1000)),
    ),
    invalid(
        f"{C}.secrets[1].file.name",
        "'pw' is also the target of spec.task.container.secrets[0]",
        _c(lambda c: c.secrets.add(secret_id="s2", file=specs_pb2.FileTarget(name="pw"))),
    ),
    invalid(
        f"{C}.mounts[0].type",
        "unknown value 9 (expected one of BIND, VOLUME, TMPFS)",
        _mount(0, lambda m: setattr(m, "type", 9)),
    ),
    invalid(
        f"{C}.mounts[0].target",
        "'data' is not an absolute path",
        _mount(0, lambda m: setattr(m, "target", "data")),
    ),
    invalid(f"{C}.mounts[0].target", "must be set", _mount(0, lambda m: setattr(m, "target", ""))),
    invalid(
        f"{C}.mounts[0].target", "cannot be '/'", _mount(0, lambda m: setattr(m, "target", "/"))
    ),
    invalid(
        f"{C}.mounts[0].source",
        "'data' is not an absolute path",
        _mount(0, lambda m: setattr(m, "source", "data")),
    ),
    invalid(
        f"{C}.mounts[0].volume_options",
        "cannot be set on a BIND mount",
        _mount(0, lambda m: m.volume_options.SetInParent()),
    ),
    invalid(
        f"{C}.mounts[0].bind_options.propagation",
        "unknown value 42",
        _mount(0, lambda m: setattr(m.bind_options, "propagation", 42)),
    ),
    invalid(
        f"{C}.mounts[1].source",
        "invalid volume name 'a/b'",
        _mount(1, lambda m: setattr(m, "source", "a/b")),
    ),
    invalid(
        f"{C}.mounts[2].source",
        "must be empty for a TMPFS mount",
        _mount(2, lambda m: setattr(m, "source", "/x")),
    ),
    invalid(
        f"{C}.mounts[2].tmpfs_options.size_bytes",
        "must not be negative (got -1)",
        _mount(2, lambda m: setattr(m.tmpfs_options, "size_bytes", -1)),
    ),
    invalid(
        f"{C}.mounts[2].tmpfs_options.mode",
        "0o17777 is not a permission mode",
        _mount(2, lambda m: setattr(m.tmpfs_options, "mode", 0o17777)),
    ),
    invalid(
        f"{C}.mounts[3].target",
        "duplicate mount point '/data' (also spec.task.container.mounts[0])",
        _c(lambda c: c.mounts.add(type=Mount.TMPFS, target="/data/")),
    ),
    invalid(
        "spec.task.resources.limits.nano_cpus",
        "must not be negative (got -1)",
        _set("task.resources.limits.nano_cpus", -1),
    ),
    invalid(
        "spec.task.resources.limits.memory_bytes",
        "1 is less than the minimum of 4194304",
        _set("task.resources.limits.memory_bytes", 1),
    ),
    invalid(
        "spec.task.resources.reservations.memory_bytes",
        "2147483648 is more than the limit 1073741824 (spec.task.resources.limits.memory_bytes)",
        _set("task.resources.reservations.memory_bytes", 1 << 31),
    ),
    invalid(
        "spec.task.resources.limits.generic",
        "generic resources can be reserved, not limited",
        lambda s: s.task.resources.limits.generic.add(kind="gpu", discrete_value=1),
    ),
    invalid(
        "spec.task.resources.reservations.generic[1].discrete_value",
        "must be positive (got -1)",
        lambda s: s.task.resources.reservations.generic.add(kind="ssd", discrete_value=-1),
    ),
    invalid(
        "spec.task.resources.reservations.generic[1]",
        "must set named_value or discrete_value",
        lambda s: s.task.resources.reservations.generic.add(kind="ssd"),
    ),
    invalid("spec.task.restart.condition", "unknown value 5", _set("task.restart.condition", 5)),
    invalid(
        "spec.task.restart.delay", "must not be negative", _set("task.restart.delay.seconds", -5)
    ),
    invalid(
        "spec.task.restart.window", "must not be negative", _set("task.restart.window.seconds", -1)
    ),
    invalid(
        "spec.task.restart.max_attempts",
        "must not be negative (got 18446744073709551615, which is -1 as int64)",
        _set("task.restart.max_attempts", NEGATIVE_ONE),
    ),
    invalid(
        "spec.task.placement.constraints[1]",
        "invalid constraint 'node.role>>x': expected one operator, == or !=",
        lambda s: s.task.placement.constraints.append("node.role>>x"),
    ),
    invalid(
        "spec.task.placement.constraints[1]",
        "unknown key 'node.colour'",
        lambda s: s.task.placement.constraints.append("node.colour==red"),
    ),
    invalid(
        "spec.task.placement.preferences[1].spread.spread_descriptor",
        "invalid placement preference 'spread=bogus'",
        lambda s: setattr(s.task.placement.preferences.add().spread, "spread_descriptor", "bogus"),
    ),
    invalid(
        "spec.task.placement.preferences[1]",
        "must set spread",
        lambda s: s.task.placement.preferences.add(),
    ),
    invalid(
        "spec.task.placement.platforms[1]",
        "must set os, architecture or both",
        lambda s: s.task.placement.platforms.add(),
    ),
    invalid(
        "spec.task.placement.max_replicas",
        "must not be negative",
        _set("task.placement.max_replicas", 1 << 63),
    ),
    invalid("spec.task.networks[1].target", "must be set", lambda s: s.task.networks.add()),
    invalid(
        "spec.task.networks[1].target",
        "network 'n1' is also attached by spec.task.networks[0]",
        lambda s: s.task.networks.add(target="n1"),
    ),
    invalid(
        "spec.task.networks[0].addresses[1]",
        "'10.0.9.6' is not an address in CIDR form",
        lambda s: s.task.networks[0].addresses.append("10.0.9.6"),
    ),
    invalid(
        "spec.task.networks[0].aliases[1]",
        "contains white space",
        lambda s: s.task.networks[0].aliases.append("a b"),
    ),
    invalid("spec.task.log_driver.name", "must be set", _set("task.log_driver.name", "")),
    invalid("spec.mode", "must be set: one of replicated_service", _no_mode),
    invalid(
        "spec.replicated_service.replicas",
        "must not be negative (got 18446744073709551615, which is -1 as int64)",
        _set("replicated_service.replicas", NEGATIVE_ONE),
    ),
    invalid(
        "spec.replicated_service.replicas",
        "100001 is more than the limit of 100000",
        _set("replicated_service.replicas", 100_001),
    ),
    invalid(
        "spec.replicated_job.max_concurrent",
        "must not be negative",
        _set("replicated_job.max_concurrent", NEGATIVE_ONE),
    ),
    invalid(
        "spec.task.placement.max_replicas",
        "applies to replicated modes only, not global_service",
        _global_with_max_replicas,
    ),
    invalid(
        "spec.update.parallelism", "must not be negative", _set("update.parallelism", NEGATIVE_ONE)
    ),
    invalid("spec.update.delay", "must not be negative", _set("update.delay.seconds", -1)),
    invalid("spec.update.monitor", "must not be negative", _set("update.monitor.seconds", -1)),
    invalid("spec.update.failure_action", "unknown value 9", _set("update.failure_action", 9)),
    invalid(
        "spec.update.max_failure_ratio",
        "must be in [0, 1] (got nan)",
        _set("update.max_failure_ratio", float("nan")),
    ),
    invalid(
        "spec.update.max_failure_ratio",
        "must be in [0, 1] (got 1.5)",
        _set("update.max_failure_ratio", 1.5),
    ),
    invalid(
        "spec.update.max_failure_ratio",
        "must be in [0, 1] (got -inf)",
        _set("update.max_failure_ratio", float("-inf")),
    ),
    invalid("spec.update.order", "unknown value 3", _set("update.order", 3)),
    invalid(
        "spec.rollback.failure_action",
        "a rollback cannot roll back",
        _set("rollback.failure_action", types_pb2.UpdateConfig.ROLLBACK),
    ),
    invalid("spec.networks", "set only spec.task.networks", _both_networks),
    invalid("spec.endpoint.mode", "unknown value 5", _set("endpoint.mode", 5)),
    invalid(
        "spec.endpoint.ports[0].target_port",
        "0 is not in 1-65535",
        lambda s: setattr(s.endpoint.ports[0], "target_port", 0),
    ),
    invalid(
        "spec.endpoint.ports[0].target_port",
        "70000 is not in 1-65535",
        lambda s: setattr(s.endpoint.ports[0], "target_port", 70000),
    ),
    invalid(
        "spec.endpoint.ports[0].published_port",
        "70000 is not in 1-65535",
        lambda s: setattr(s.endpoint.ports[0], "published_port", 70000),
    ),
    invalid(
        "spec.endpoint.ports[0].protocol",
        "unknown value 9",
        lambda s: setattr(s.endpoint.ports[0], "protocol", 9),
    ),
    invalid(
        "spec.endpoint.ports[0].publish_mode",
        "unknown value 9",
        lambda s: setattr(s.endpoint.ports[0], "publish_mode", 9),
    ),
    invalid(
        "spec.endpoint.ports[2].published_port",
        "duplicate published port 8080/tcp (also spec.endpoint.ports[0])",
        lambda s: s.endpoint.ports.add(target_port=81, published_port=8080),
    ),
    invalid(
        "spec.endpoint.ports[0].publish_mode",
        "INGRESS ports need the VIP endpoint mode",
        _set("endpoint.mode", types_pb2.EndpointSpec.DNSRR),
    ),
    invalid(
        "spec",
        "more than the limit of 262144",
        lambda s: s.task.container.env.extend(["X=" + "x" * 100_000] * 3),
    ),
]


def test_the_full_spec_is_valid() -> None:
    check_service_spec(full_service())


def test_same_published_port_on_two_protocols_is_fine() -> None:
    spec = full_service()
    spec.endpoint.ports.add(target_port=53, published_port=53)  # tcp beside udp
    check_service_spec(spec)


@pytest.mark.parametrize(("mutate", "field", "problem"), SERVICE_CASES)
def test_service_rule(mutate: Mutation, field: str, problem: str) -> None:
    spec = full_service()
    mutate(spec)
    with pytest.raises(InvalidArgument) as info:
        check_service_spec(spec)
    assert info.value.field == field, str(info.value)
    assert problem in info.value.problem, str(info.value)
    assert str(info.value) == f"{field}: {info.value.problem}"


def valid_node() -> specs_pb2.NodeSpec:
    spec = specs_pb2.NodeSpec(
        desired_role=types_pb2.MANAGER,
        membership=specs_pb2.NodeSpec.ACCEPTED,
        availability=specs_pb2.NodeSpec.DRAIN,
    )
    spec.annotations.name = "node-1.example"
    spec.annotations.labels["zone"] = "a"
    return spec


NODE_CASES = [
    invalid(
        "spec.annotations.name", "invalid name 'no spaces'", _set("annotations.name", "no spaces")
    ),
    invalid("spec.annotations.labels", "258 labels", _big_label_map),
    invalid(
        "spec.desired_role",
        "unknown value 5 (expected one of WORKER, MANAGER)",
        _set("desired_role", 5),
    ),
    invalid("spec.membership", "unknown value 9", _set("membership", 9)),
    invalid("spec.availability", "unknown value -1", _set("availability", -1)),
    invalid(
        "spec",
        "more than the limit of 65536",
        lambda s: s.annotations.labels.update({f"k{i}": "v" * 4000 for i in range(20)}),
    ),
]


def test_node_spec_valid_and_unnamed() -> None:
    check_node_spec(valid_node())
    check_node_spec(specs_pb2.NodeSpec())


@pytest.mark.parametrize(("mutate", "field", "problem"), NODE_CASES)
def test_node_rule(mutate: Mutation, field: str, problem: str) -> None:
    spec = valid_node()
    mutate(spec)
    with pytest.raises(InvalidArgument) as info:
        check_node_spec(spec)
    assert (info.value.field, problem in info.value.problem) == (field, True), str(info.value)


def valid_network() -> specs_pb2.NetworkSpec:
    spec = specs_pb2.NetworkSpec(attachable=True)
    spec.annotations.name = "backend"
    spec.driver_config.name = "overlay"
    config = spec.ipam.configs.add(
        family=types_pb2.IPAMConfig.IPV4,
        subnet="10.1.0.0/16",
        range="10.1.2.0/24",
        gateway="10.1.0.1",
    )
    config.reserved["10.1.0.2"] = "router"
    spec.ipam.configs.add(subnet="fd00::/64")
    return spec


def _ipam(number: int, **fields: object) -> Mutation:
    def mutate(spec: specs_pb2.NetworkSpec) -> None:
        for name, value in fields.items():
            setattr(spec.ipam.configs[number], name, value)

    return mutate


IPAM = "spec.ipam.configs[0]"
NETWORK_CASES = [
    invalid("spec.annotations.name", "must be set", _set("annotations.name", "")),
    invalid("spec.annotations.name", "invalid name 'a b'", _set("annotations.name", "a b")),
    invalid(
        "spec.driver_config.name",
        "unsupported driver 'bridge'",
        _set("driver_config.name", "bridge"),
    ),
    invalid("spec.attachable", "the ingress network cannot be attachable", _set("ingress", True)),
    invalid(
        "spec.internal",
        "the ingress network cannot be internal",
        lambda s: (
            s.MergeFrom(specs_pb2.NetworkSpec(ingress=True, internal=True))
            or s.ClearField("attachable")
        ),
    ),
    invalid(
        "spec.ipam.driver.name", "unsupported IPAM driver 'dhcp'", _set("ipam.driver.name", "dhcp")
    ),
    invalid(f"{IPAM}.family", "unknown value 5", _ipam(0, family=5)),
    invalid(f"{IPAM}.subnet", "'nonsense' is not a CIDR network", _ipam(0, subnet="nonsense")),
    invalid(
        f"{IPAM}.subnet",
        "'10.1.0.1/16' has host bits set (the network is 10.1.0.0/16)",
        _ipam(0, subnet="10.1.0.1/16"),
    ),
    invalid(
        f"{IPAM}.subnet",
        "10.1.0.0/16 is not an IPV6 network",
        _ipam(0, family=types_pb2.IPAMConfig.IPV6),
    ),
    invalid(
        f"{IPAM}.subnet",
        "is too small",
        lambda s: (
            s.ipam.configs[0].reserved.clear(),
            _ipam(0, subnet="10.1.0.0/31", range="", gateway="")(s),
        ),
    ),
    invalid(
        f"{IPAM}.range",
        "10.2.0.0/24 is not inside the subnet 10.1.0.0/16",
        _ipam(0, range="10.2.0.0/24"),
    ),
    invalid(
        f"{IPAM}.gateway",
        "10.2.0.1 is not a usable address of 10.1.0.0/16",
        _ipam(0, gateway="10.2.0.1"),
    ),
    invalid(f"{IPAM}.gateway", "10.1.0.0 is not a usable address", _ipam(0, gateway="10.1.0.0")),
    invalid(
        f"{IPAM}.reserved['10.9.0.1']",
        "not a usable address",
        lambda s: s.ipam.configs[0].reserved.update({"10.9.0.1": "x"}),
    ),
    invalid(
        "spec.ipam.configs[1].gateway",
        "needs an explicit subnet",
        _ipam(1, subnet="", gateway="fd00::1"),
    ),
    invalid(
        "spec.ipam.configs[2].subnet",
        "10.1.128.0/17 overlaps 10.1.0.0/16 (spec.ipam.configs[0].subnet)",
        lambda s: s.ipam.configs.add(subnet="10.1.128.0/17"),
    ),
    invalid(
        "spec.ipam.configs",
        "17 entries, more than 16",
        lambda s: [s.ipam.configs.add() for _ in range(15)],
    ),
]


def test_network_spec_valid() -> None:
    check_network_spec(valid_network())


@pytest.mark.parametrize(("mutate", "field", "problem"), NETWORK_CASES)
def test_network_rule(mutate: Mutation, field: str, problem: str) -> None:
    spec = valid_network()
    mutate(spec)
    with pytest.raises(InvalidArgument) as info:
        check_network_spec(spec)
    assert (info.value.field, problem in info.value.problem) == (field, True), str(info.value)


def valid_cluster() -> specs_pb2.ClusterSpec:
    spec = specs_pb2.ClusterSpec()
    spec.annotations.name = "default"
    spec.orchestration.task_history_retention_limit = -1
    spec.raft.heartbeat_tick = 1
    spec.raft.election_tick = 10
    spec.dispatcher.heartbeat_period.seconds = 5
    spec.ca_config.node_cert_expiry.seconds = 3600
    spec.task_defaults.log_driver.name = "json-file"
    return spec


CLUSTER_CASES = [
    invalid("spec.annotations.name", "must be set", _set("annotations.name", "")),
    invalid(
        "spec.raft.election_tick",
        "10 must be more than heartbeat_tick (10)",
        _set("raft.heartbeat_tick", 10),
    ),
    invalid(
        "spec.raft.snapshot_interval",
        "must not be negative",
        _set("raft.snapshot_interval", NEGATIVE_ONE),
    ),
    invalid(
        "spec.dispatcher.heartbeat_period",
        "must not be negative",
        _set("dispatcher.heartbeat_period.seconds", -5),
    ),
    invalid(
        "spec.ca_config.node_cert_expiry",
        "at least 1 hour",
        _set("ca_config.node_cert_expiry.seconds", 3599),
    ),
    invalid(
        "spec.task_defaults.log_driver.name",
        "must be set",
        _set("task_defaults.log_driver.name", ""),
    ),
    invalid(
        "spec.encryption_config.auto_lock_managers",
        "Shoal has no autolock",
        _set("encryption_config.auto_lock_managers", True),
    ),
]


def test_cluster_spec_valid() -> None:
    check_cluster_spec(valid_cluster())


@pytest.mark.parametrize(("mutate", "field", "problem"), CLUSTER_CASES)
def test_cluster_rule(mutate: Mutation, field: str, problem: str) -> None:
    spec = valid_cluster()
    mutate(spec)
    with pytest.raises(InvalidArgument) as info:
        check_cluster_spec(spec)
    assert (info.value.field, problem in info.value.problem) == (field, True), str(info.value)


@pytest.mark.parametrize(
    ("check", "spec_class", "limit"),
    [
        (check_secret_spec, specs_pb2.SecretSpec, 500 * 1024),
        (check_config_spec, specs_pb2.ConfigSpec, 1000 * 1024),
    ],
)
def test_payload_rules(check: Callable[[Any], None], spec_class: type[Any], limit: int) -> None:
    def spec(name: str = "app.key", data: bytes = b"x") -> Any:
        result = spec_class(data=data)
        result.annotations.name = name
        return result

    check(spec(data=b"x" * limit))
    for bad, field, problem in [
        (spec(name=""), "spec.annotations.name", "must be set"),
        (spec(name="a b"), "spec.annotations.name", "invalid name 'a b'"),
        (spec(name="a" * 65), "spec.annotations.name", "1 to 64 letters"),
        (spec(data=b""), "spec.data", "must not be empty"),
        (spec(data=b"x" * (limit + 1)), "spec.data", f"is {limit + 1} bytes, more than {limit}"),
    ]:
        with pytest.raises(InvalidArgument) as info:
            check(bad)
        assert (info.value.field, problem in info.value.problem) == (field, True), str(info.value)
