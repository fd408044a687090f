"""Container mounts: bind (absolute host path), volume (named or anonymous), tmpfs."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from common.errors import shown
from manager.controlapi.errors import InvalidArgument
from manager.controlapi.validation.fields import (
    check_absolute_path,
    check_driver,
    check_enum,
    check_file_mode,
    check_labels,
    check_not_negative,
)
from shoal.v1 import types_pb2

# Docker's rule for volume names.
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}")
_OPTIONS_FIELD = {
    types_pb2.Mount.BIND: "bind_options",
    types_pb2.Mount.VOLUME: "volume_options",
    types_pb2.Mount.TMPFS: "tmpfs_options",
}


def check_mounts(field: str, mounts: Sequence[types_pb2.Mount]) -> None:
    targets: dict[str, int] = {}
    for number, mount in enumerate(mounts):
        path = f"{field}[{number}]"
        check_mount(path, mount)
        target = posixpath.normpath(mount.target)
        if target in targets:
            raise InvalidArgument(
                f"{path}.target",
                f"duplicate mount point {shown(target)} (also {field}[{targets[target]}])",
            )
        targets[target] = number


def check_mount(field: str, mount: types_pb2.Mount) -> None:
    check_enum(f"{field}.type", mount.type, types_pb2.Mount.Type.DESCRIPTOR)
    check_absolute_path(f"{field}.target", mount.target)
    if posixpath.normpath(mount.target) == "/":
        raise InvalidArgument(f"{field}.target", "cannot be '/' (the container's root)")
    type_name = types_pb2.Mount.Type.Name(mount.type)
    for options_type, options_field in _OPTIONS_FIELD.items():
        if options_type != mount.type and mount.HasField(options_field):  # type: ignore[arg-type]
            raise InvalidArgument(
                f"{field}.{options_field}", f"cannot be set on a {type_name} mount"
            )
    if mount.type == types_pb2.Mount.BIND:
        check_absolute_path(f"{field}.source", mount.source)
        check_enum(
            f"{field}.bind_options.propagation",
            mount.bind_options.propagation,
            types_pb2.Mount.BindOptions.Propagation.DESCRIPTOR,
        )
    elif mount.type == types_pb2.Mount.VOLUME:
        # An empty source asks for an anonymous volume.
        if mount.source and not _VOLUME_NAME.fullmatch(mount.source):
            raise InvalidArgument(
                f"{field}.source",
                f"invalid volume name {shown(mount.source)}: letters, digits, '_', '.' and "
                "'-', starting with a letter or digit, at most 255 characters",
            )
        options = mount.volume_options
        check_labels(f"{field}.volume_options.labels", options.labels)
        if options.HasField("driver_config"):
            check_driver(f"{field}.volume_options.driver_config", options.driver_config)
    else:
        if mount.source:
            raise InvalidArgument(f"{field}.source", "must be empty for a TMPFS mount")
        check_not_negative(f"{field}.tmpfs_options.size_bytes", mount.tmpfs_options.size_bytes)
        check_file_mode(f"{field}.tmpfs_options.mode", mount.tmpfs_options.mode)
