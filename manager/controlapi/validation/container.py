"""The container of a task spec: image, process, identity, health check, DNS, hosts, and the
secrets and configs it mounts. Only the form is checked here; whether referenced secrets and
configs exist is checked against the store (see references.py)."""

from __future__ import annotations

import posixpath
import re
import signal
from collections.abc import Sequence

from common import image_reference
from common.errors import shown
from manager.controlapi.errors import InvalidArgument
from manager.controlapi.validation.fields import (
    check_absolute_path,
    check_exec_string,
    check_file_mode,
    check_ip,
    check_labels,
    check_required,
    check_text,
    duration_nanos,
)
from manager.controlapi.validation.mounts import check_mounts
from shoal.v1 import specs_pb2, types_pb2

MAX_LIST_ITEMS = 1024
MAX_HOSTNAME_CHARS = 63
_HOSTNAME = re.compile(
    r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
)
_USER = re.compile(r"[^:\s]+(?::[^:\s]+)?")
_GROUP = re.compile(r"[^:\s]+")
_NUMERIC_ID = re.compile(r"[0-9]{1,10}")
_SIGNALS = {s.name for s in signal.Signals if s.name.startswith("SIG") and "_" not in s.name}
# A health check shorter than this is a typo (Docker's minimum).
MIN_HEALTH_PERIOD_NANOS = 1_000_000
HEALTH_TESTS = ("NONE", "CMD", "CMD-SHELL")


def check_image_reference(field: str, reference: str) -> None:
    """Raise InvalidArgument "<field>: invalid reference '<ref>': <why>" unless `reference`
    is an image reference (common.image_reference: the grammar the runtime parses)."""
    if not reference:
        raise InvalidArgument(field, "must be set (an image reference)")
    try:
        image_reference.parse(reference)
    except image_reference.InvalidReference as exc:
        raise InvalidArgument(field, str(exc)) from None


def check_container(field: str, container: specs_pb2.ContainerSpec) -> None:
    check_image_reference(f"{field}.image", container.image)
    check_labels(f"{field}.labels", container.labels)
    for name in ("command", "args"):
        _check_list_size(f"{field}.{name}", getattr(container, name))
        for number, arg in enumerate(getattr(container, name)):
            check_exec_string(f"{field}.{name}[{number}]", arg)
    _check_env(f"{field}.env", container.env)
    if container.hostname:
        _check_hostname(f"{field}.hostname", container.hostname)
    if container.dir:
        check_absolute_path(f"{field}.dir", container.dir)
    check_text(f"{field}.user", container.user, 255)
    if container.user and not _USER.fullmatch(container.user):
        raise InvalidArgument(
            f"{field}.user",
            f"{shown(container.user)} is not user, uid, user:group or uid:gid",
        )
    _check_list_size(f"{field}.groups", container.groups)
    for number, group in enumerate(container.groups):
        check_text(f"{field}.groups[{number}]", group, 255)
        if not _GROUP.fullmatch(group):
            raise InvalidArgument(f"{field}.groups[{number}]", f"{shown(group)} is not a group")
    if container.stop_signal:
        _check_signal(f"{field}.stop_signal", container.stop_signal)
    check_mounts(f"{field}.mounts", container.mounts)
    if container.HasField("stop_grace_period"):
        duration_nanos(f"{field}.stop_grace_period", container.stop_grace_period)
    if container.HasField("healthcheck"):
        _check_healthcheck(f"{field}.healthcheck", container.healthcheck)
    _check_hosts(f"{field}.hosts", container.hosts)
    _check_dns(f"{field}.dns_config", container.dns_config)
    _check_file_references(
        f"{field}.secrets", "secret_id", "secret_name", container.secrets, absolute_ok=False
    )
    _check_file_references(
        f"{field}.configs", "config_id", "config_name", container.configs, absolute_ok=True
    )


def _check_list_size(field: str, items: Sequence[object]) -> None:
    if len(items) > MAX_LIST_ITEMS:
        raise InvalidArgument(field, f"{len(items)} entries, more than {MAX_LIST_ITEMS}")


def _check_env(field: str, env: Sequence[str]) -> None:
    _check_list_size(field, env)
    for number, entry in enumerate(env):
        check_exec_string(f"{field}[{number}]", entry)
        key = entry.split("=", 1)[0]
        if not key or key.strip() != key:
            raise InvalidArgument(
                f"{field}[{number}]", f"{shown(entry)} is not KEY=value with a non-empty KEY"
            )


def _check_hostname(field: str, hostname: str) -> None:
    if len(hostname) > MAX_HOSTNAME_CHARS or not _HOSTNAME.fullmatch(hostname):
        raise InvalidArgument(
            field,
            f"invalid hostname {shown(hostname)}: at most {MAX_HOSTNAME_CHARS} characters, "
            "dot-separated labels of letters, digits and '-'",
        )


def _check_signal(field: str, name: str) -> None:
    if name.isdigit() and 1 <= int(name) <= 64:
        return
    upper = name.upper()
    if upper in _SIGNALS or f"SIG{upper}" in _SIGNALS:
        return
    raise InvalidArgument(
        field, f"unknown signal {shown(name)} (a name such as SIGTERM, or a number 1-64)"
    )


def _check_healthcheck(field: str, health: types_pb2.HealthConfig) -> None:
    _check_list_size(f"{field}.test", health.test)
    for number, part in enumerate(health.test):
        check_exec_string(f"{field}.test[{number}]", part)
    if health.test:
        kind, args = health.test[0], len(health.test) - 1
        if kind not in HEALTH_TESTS:
            raise InvalidArgument(
                f"{field}.test[0]", f"{shown(kind)} is not one of {', '.join(HEALTH_TESTS)}"
            )
        if kind == "NONE" and args:
            raise InvalidArgument(f"{field}.test", "NONE takes no arguments")
        if kind == "CMD" and not args:
            raise InvalidArgument(f"{field}.test", "CMD needs the command to run")
        if kind == "CMD-SHELL" and args != 1:
            raise InvalidArgument(f"{field}.test", "CMD-SHELL takes exactly one shell command")
    for name in ("interval", "timeout", "start_period"):
        if health.HasField(name):
            nanos = duration_nanos(f"{field}.{name}", getattr(health, name))
            if 0 < nanos < MIN_HEALTH_PERIOD_NANOS:
                raise InvalidArgument(f"{field}.{name}", "must be 0 (the default) or at least 1ms")
    if health.retries < 0:
        raise InvalidArgument(f"{field}.retries", f"must not be negative (got {health.retries})")


def _check_hosts(field: str, hosts: Sequence[str]) -> None:
    _check_list_size(field, hosts)
    for number, line in enumerate(hosts):
        path = f"{field}[{number}]"
        check_text(path, line, 1024)
        parts = line.split()
        if len(parts) < 2:
            raise InvalidArgument(path, f"{shown(line)} is not 'IP hostname [alias...]'")
        check_ip(path, parts[0])


def _check_dns(field: str, dns: specs_pb2.ContainerSpec.DNSConfig) -> None:
    for name in ("nameservers", "search", "options"):
        _check_list_size(f"{field}.{name}", getattr(dns, name))
    for number, server in enumerate(dns.nameservers):
        check_ip(f"{field}.nameservers[{number}]", server)
    for name in ("search", "options"):
        for number, item in enumerate(getattr(dns, name)):
            path = f"{field}.{name}[{number}]"
            check_required(path, item)
            check_text(path, item, 253)
            if any(char.isspace() for char in item):
                raise InvalidArgument(path, f"{shown(item)} contains white space")


def _check_file_references(
    field: str,
    id_field: str,
    name_field: str,
    references: Sequence[specs_pb2.SecretReference | specs_pb2.ConfigReference],
    absolute_ok: bool,
) -> None:
    _check_list_size(field, references)
    targets: dict[str, int] = {}
    for number, reference in enumerate(references):
        path = f"{field}[{number}]"
        check_required(f"{path}.{id_field}", getattr(reference, id_field))
        check_text(f"{path}.{id_field}", getattr(reference, id_field), 64)
        check_text(f"{path}.{name_field}", getattr(reference, name_field), 64)
        if not reference.HasField("file"):
            raise InvalidArgument(f"{path}.file", "must be set (where the file appears)")
        target = _check_file_target(f"{path}.file", reference.file, absolute_ok)
        if target in targets:
            raise InvalidArgument(
                f"{path}.file.name",
                f"{shown(target)} is also the target of {field}[{targets[target]}]",
            )
        targets[target] = number


def _check_file_target(field: str, target: specs_pb2.FileTarget, absolute_ok: bool) -> str:
    check_required(f"{field}.name", target.name)
    check_text(f"{field}.name", target.name, 4096)
    if target.name.startswith("/") and not absolute_ok:
        raise InvalidArgument(
            f"{field}.name", f"{shown(target.name)} must be relative (to /run/secrets)"
        )
    if ".." in target.name.split("/"):
        raise InvalidArgument(f"{field}.name", f"{shown(target.name)} must not contain '..'")
    for name in ("uid", "gid"):
        value = getattr(target, name)
        if value and not _NUMERIC_ID.fullmatch(value):
            raise InvalidArgument(f"{field}.{name}", f"{shown(value)} is not a numeric id")
    check_file_mode(f"{field}.mode", target.mode, 0o777)
    return posixpath.normpath(target.name)
