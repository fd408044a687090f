"""Checks shared by every kind of spec: names, labels, enums, durations, sizes, text.

Each check raises InvalidArgument naming the field by its path in the request, e.g.
`spec.annotations.labels['zone']` or `spec.task.container.mounts[1].target`.
"""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
from collections.abc import Mapping

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from common.errors import shown
from manager.controlapi.errors import InvalidArgument
from shoal.v1 import types_pb2

# Labels: enough for any real use, small enough that one object cannot bloat the store.
MAX_LABELS = 256
MAX_LABEL_KEY_CHARS = 255
MAX_LABEL_VALUE_CHARS = 4096
# Linux's MAX_ARG_STRLEN.
MAX_EXEC_STRING_CHARS = 128 * 1024
# google.protobuf.Duration's own range (about 10,000 years).
MAX_DURATION_SECONDS = 315_576_000_000
# A uint64 at or above 2**63 is what a client's negative number becomes.
SIGNED_LIMIT = 1 << 63

# RFC 1123 label, as service names must be (they become DNS names).
_DNS_LABEL = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?")
# Networks, secrets, configs: alphanumerics with - _ . inside (Docker's rule for secrets).
_OBJECT_NAME = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9_.-]*[a-zA-Z0-9])?")


def check_spec_size(field: str, spec: Message, limit: int) -> None:
    """First check of every spec: bounds the work of all later ones and the raft entry."""
    size = spec.ByteSize()
    if size > limit:
        raise InvalidArgument(field, f"is {size} bytes, more than the limit of {limit}")


def check_required(field: str, value: str) -> None:
    if not value:
        raise InvalidArgument(field, "must be set")


def check_dns_label(field: str, name: str) -> None:
    check_required(field, name)
    if len(name) > 63 or not _DNS_LABEL.fullmatch(name):
        raise InvalidArgument(
            field,
            f"invalid name {shown(name)}: a DNS label is 1 to 63 letters, digits and '-', "
            "starting and ending with a letter or digit",
        )


def check_object_name(field: str, name: str, max_chars: int = 64) -> None:
    check_required(field, name)
    if len(name) > max_chars or not _OBJECT_NAME.fullmatch(name):
        raise InvalidArgument(
            field,
            f"invalid name {shown(name)}: 1 to {max_chars} letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit",
        )


def check_labels(field: str, labels: Mapping[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(field, f"{len(labels)} labels, more than the limit of {MAX_LABELS}")
    for key, value in labels.items():
        if not key:
            raise InvalidArgument(field, "a label key is empty")
        check_text(f"{field}[{shown(key)}] (key)", key, MAX_LABEL_KEY_CHARS, single_line=True)
        check_text(f"{field}[{shown(key)}]", value, MAX_LABEL_VALUE_CHARS, single_line=False)


def check_text(field: str, text: str, max_chars: int, single_line: bool = True) -> None:
    """Free text: bounded, no NUL (it cannot reach a process), no control characters
    (newlines and tabs allowed when not `single_line`)."""
    if len(text) > max_chars:
        raise InvalidArgument(field, f"is {len(text)} characters, more than {max_chars}")
    allowed = "" if single_line else "\n\t\r"
    for char in text:
        if char not in allowed and unicodedata.category(char) == "Cc":
            raise InvalidArgument(field, f"contains the control character {char!r}")


def check_exec_string(field: str, text: str) -> None:
    """An argument, environment entry or command: anything but NUL (which cannot reach a
    process), at most the kernel's limit for one exec string."""
    if len(text) > MAX_EXEC_STRING_CHARS:
        raise InvalidArgument(
            field, f"is {len(text)} characters, more than {MAX_EXEC_STRING_CHARS}"
        )
    if "\0" in text:
        raise InvalidArgument(field, "contains a NUL character")


def check_enum(field: str, value: int, enum: EnumDescriptor) -> None:
    """Proto3 enums are open: a client can send any number. Only the named ones mean
    something."""
    if value not in enum.values_by_number:
        known = ", ".join(v.name for v in enum.values)
        raise InvalidArgument(field, f"unknown value {value} (expected one of {known})")


def check_count(field: str, value: int, maximum: int | None = None) -> None:
    """A uint64 count: a negative number sent by the client arrives as >= 2**63."""
    if value >= SIGNED_LIMIT:
        raise InvalidArgument(
            field, f"must not be negative (got {value}, which is {value - (1 << 64)} as int64)"
        )
    if maximum is not None and value > maximum:
        raise InvalidArgument(field, f"{value} is more than the limit of {maximum}")


def check_file_mode(field: str, mode: int, maximum: int = 0o7777) -> None:
    if mode > maximum:
        raise InvalidArgument(
            field, f"{oct(mode)} is not a permission mode (at most {oct(maximum)})"
        )


def check_not_negative(field: str, value: int) -> None:
    if value < 0:
        raise InvalidArgument(field, f"must not be negative (got {value})")


def duration_nanos(field: str, duration: Duration, minimum_nanos: int = 0) -> int:
    """The duration in nanoseconds, after checking it is a well-formed Duration of at least
    `minimum_nanos` (0: not negative)."""
    seconds, nanos = duration.seconds, duration.nanos
    if (
        abs(seconds) > MAX_DURATION_SECONDS
        or abs(nanos) > 999_999_999
        or (seconds > 0 and nanos < 0)
        or (seconds < 0 and nanos > 0)
    ):
        raise InvalidArgument(field, f"is not a valid duration (seconds={seconds}, nanos={nanos})")
    total = seconds * 1_000_000_000 + nanos
    if total < 0:
        raise InvalidArgument(field, f"must not be negative (got {_seconds(total)})")
    if total < minimum_nanos:
        raise InvalidArgument(
            field, f"must be at least {_seconds(minimum_nanos)} (got {_seconds(total)})"
        )
    return total


def check_ratio(field: str, value: float) -> None:
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise InvalidArgument(field, f"must be in [0, 1] (got {value})")


def check_absolute_path(field: str, path: str) -> None:
    check_required(field, path)
    check_text(field, path, 4096)
    if not path.startswith("/"):
        raise InvalidArgument(field, f"{shown(path)} is not an absolute path")


def check_ip(field: str, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(field, f"{shown(text)} is not an IP address") from None


def check_cidr(field: str, text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A network in CIDR form; host bits must be zero ("10.0.1.0/24", not "10.0.1.5/24")."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(field, f"{shown(text)} is not a CIDR network") from None
    raise InvalidArgument(field, f"{shown(text)} has host bits set (the network is {loose})")


def check_interface(field: str, text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """An address with its prefix length, e.g. "10.0.1.5/24"."""
    if "/" not in text:
        raise InvalidArgument(field, f"{shown(text)} is not an address in CIDR form")
    try:
        return ipaddress.ip_interface(text)
    except ValueError:
        raise InvalidArgument(field, f"{shown(text)} is not an address in CIDR form") from None


def check_driver(field: str, driver: types_pb2.Driver) -> None:
    check_required(f"{field}.name", driver.name)
    check_text(f"{field}.name", driver.name, 255)
    check_labels(f"{field}.options", driver.options)


def _seconds(nanos: int) -> str:
    return f"{nanos / 1e9:g}s"
