"""Published ports: `-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]`, validated once, here."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from runtime.network.errors import InvalidPortError, PortConflictError

PROTOCOLS = ("tcp", "udp")
WILDCARD_ADDRESSES = ("", "0.0.0.0")


def _check_port(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidPortError(f"{what} must be a number from 1 to 65535, not {value!r}")


@dataclass(frozen=True)
class PortMapping:
    """Traffic to `host_ip:host_port` (any local address when `host_ip` is "") goes to the
    container's `container_port`. Invalid values raise InvalidPortError on construction."""

    container_port: int
    host_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def __post_init__(self) -> None:
        _check_port(self.container_port, "container port")
        _check_port(self.host_port, "host port")
        if self.protocol not in PROTOCOLS:
            raise InvalidPortError(f"protocol must be tcp or udp, not {self.protocol!r}")
        if self.host_ip in WILDCARD_ADDRESSES:
            object.__setattr__(self, "host_ip", "")
            return
        try:
            address = ipaddress.ip_address(self.host_ip)
        except ValueError:
            raise InvalidPortError(f"host address {self.host_ip!r} is not an IP address") from None
        if address.version != 4:
            raise InvalidPortError(f"host address {self.host_ip} is IPv6: only IPv4 is supported")
        object.__setattr__(self, "host_ip", str(address))

    def __str__(self) -> str:
        prefix = f"{self.host_ip}:" if self.host_ip else ""
        return f"{prefix}{self.host_port}:{self.container_port}/{self.protocol}"

    def conflicts_with(self, other: PortMapping) -> bool:
        """True when both would receive the same packets (same protocol and host port, and
        the same host address or either on every address)."""
        return (
            self.protocol == other.protocol
            and self.host_port == other.host_port
            and (not self.host_ip or not other.host_ip or self.host_ip == other.host_ip)
        )


def _parse_number(text: str, what: str, spec: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise InvalidPortError(f"invalid port mapping {spec!r}: {what} {text!r} is not a number")
    return int(text)


def parse_port(spec: str) -> PortMapping:
    """Parse `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]`, as `docker run -p` takes it."""
    body, slash, protocol = spec.partition("/")
    if slash and protocol not in PROTOCOLS:
        raise InvalidPortError(f"invalid port mapping {spec!r}: protocol must be tcp or udp")
    parts = body.split(":")
    if len(parts) == 2:
        host_ip, (host, container) = "", parts
    elif len(parts) == 3:
        host_ip, host, container = parts
        if not host_ip:
            raise InvalidPortError(f"invalid port mapping {spec!r}: empty host address")
    else:
        raise InvalidPortError(
            f"invalid port mapping {spec!r}: expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"
        )
    try:
        return PortMapping(
            container_port=_parse_number(container, "container port", spec),
            host_port=_parse_number(host, "host port", spec),
            protocol=protocol or "tcp",
            host_ip=host_ip,
        )
    except InvalidPortError as exc:
        if spec in str(exc):
            raise
        raise InvalidPortError(f"invalid port mapping {spec!r}: {exc}") from None


def check_no_conflicts(ports: tuple[PortMapping, ...]) -> None:
    """Refuse a request that publishes the same host port twice."""
    for i, port in enumerate(ports):
        for other in ports[i + 1 :]:
            if port.conflicts_with(other):
                raise PortConflictError(f"port mappings {port} and {other} use the same host port")
